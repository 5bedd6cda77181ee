//! podswitch control plane: the `podswitchd` node service and (later) its API.
