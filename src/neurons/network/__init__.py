"""The network of neurons: node states and breakers, health, routing, the gateway, model sync
and the seed's NetworkManager."""
