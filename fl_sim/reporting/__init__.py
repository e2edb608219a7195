"""Views of a run read from its results directory: live console, report, comparison of runs."""
