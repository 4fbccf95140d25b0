// Package appliance holds the config, wiring and lifecycle of the appliance's
// parts: the configuration file and its environment overrides live here, and
// so will the code that starts the proxy and gateway from that configuration.
package appliance
