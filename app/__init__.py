"""REST inference service for the IMDB sentiment and MNIST digit Keras models."""
