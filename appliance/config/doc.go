// Package config is the appliance's configuration: strict YAML decoding,
// DUO_CONFIDENTIAL_* environment overrides, the schema, validation and the
// commented example file, plus what a configuration implies (paths in the
// state directory, the outbound HTTP client, the manifest policy and the
// collateral source).
package config
