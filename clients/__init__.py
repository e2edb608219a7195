"""What a client does: the Flower ClientApp that trains and evaluates on its own partition."""
