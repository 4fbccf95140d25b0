package keys

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
)

// Environment variables read by LoadEnv: GitLab's AI Gateway pair and the
// Duo Workflow Service pair (which must name the same keys when both are
// set).
const (
	EnvSigningKey          = "AIGW_SELF_SIGNED_JWT__SIGNING_KEY"
	EnvValidationKey       = "AIGW_SELF_SIGNED_JWT__VALIDATION_KEY"
	EnvWorkflowSigningKey  = "DUO_WORKFLOW_SELF_SIGNED_JWT__SIGNING_KEY"
	EnvWorkflowValidateKey = "DUO_WORKFLOW_SELF_SIGNED_JWT__VALIDATION_KEY"
)

// LoadEnv reads operator-supplied keys from env (os.Environ() form; the
// last assignment wins): AIGW_SELF_SIGNED_JWT__SIGNING_KEY and
// __VALIDATION_KEY, or DUO_WORKFLOW_SELF_SIGNED_JWT__SIGNING_KEY and
// __VALIDATION_KEY. A value is PEM text (see ParseKeyPEM; "\n" escapes
// allowed) or "@/path/to/file" (a file with mode 0600 or tighter, or owned by root
// with mode 0640 or 0440, as a Kubernetes Secret volume mounts it); an empty
// value is unset. When an AIGW variable and its DUO_WORKFLOW counterpart
// are both set they must hold the same key, since the appliance serves both
// with one key pair. A validation key without a signing key is an error.
// No keys set yields zero Options (generate keys). Errors name the
// variable, never its value.
func LoadEnv(env []string) (Options, error) {
	vars := make(map[string]string, 4)
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch name {
		case EnvSigningKey, EnvValidationKey, EnvWorkflowSigningKey, EnvWorkflowValidateKey:
			vars[name] = val
		}
	}
	var errs []error
	pick := func(aigw, dws string) []byte {
		a, aKey, errA := envKey(aigw, vars[aigw])
		d, dKey, errD := envKey(dws, vars[dws])
		if errA != nil || errD != nil {
			errs = append(errs, errA, errD)
			return nil
		}
		if a != nil && d != nil {
			if !aKey.PublicKey.Equal(&dKey.PublicKey) {
				errs = append(errs, fmt.Errorf("%s and %s hold different keys; the appliance serves the gateway and Duo Workflow with one key pair: set both to the same key, or set only one", aigw, dws))
				return nil
			}
			return a
		}
		if a != nil {
			return a
		}
		return d
	}
	sign := pick(EnvSigningKey, EnvWorkflowSigningKey)
	val := pick(EnvValidationKey, EnvWorkflowValidateKey)
	if err := errors.Join(errs...); err != nil {
		return Options{}, fmt.Errorf("keys: %w", err)
	}
	if val != nil && sign == nil {
		return Options{}, fmt.Errorf("keys: %s (or %s) is set without %s (or %s); the validation key is the previous signing key, set the signing key too",
			EnvValidationKey, EnvWorkflowValidateKey, EnvSigningKey, EnvWorkflowSigningKey)
	}
	return Options{SigningKeyPEM: sign, ValidationKeyPEM: val}, nil
}

// envKey resolves one variable's value to PEM bytes (reading "@file") and
// parses it. An unset or empty value yields all nils.
func envKey(name, val string) ([]byte, *rsa.PrivateKey, error) {
	if strings.TrimSpace(val) == "" {
		return nil, nil, nil
	}
	data := []byte(val)
	if path, ok := strings.CutPrefix(val, "@"); ok {
		path = strings.TrimSpace(path)
		if path == "" {
			return nil, nil, fmt.Errorf("%s: \"@\" without a file name", name)
		}
		b, err := readKeyFile(path, ownerOnlyOrRootGroup)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		data = b
	}
	k, err := ParseKeyPEM(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return bytes.Clone(data), k, nil
}
