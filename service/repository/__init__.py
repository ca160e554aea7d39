"""Many models in one server: the BentoML store as the repository, the versions each worker
serves, and how the workers agree on them."""
