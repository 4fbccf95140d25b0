// Package appliance wires and runs the appliance's parts from a
// configuration (package config): the attesting proxy, the GitLab gateway,
// TLS and the admin UI; it owns their lifecycle (start, readiness, reload,
// drain). Configuration lives in appliance/config, the installation checks
// in appliance/doctor.
package appliance
