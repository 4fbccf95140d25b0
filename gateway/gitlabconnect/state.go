package gitlabconnect

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// State is what connect remembers between runs: the ids of the records it
// created (GitLab hides beta-family records from its lists) and the
// features it managed (so a value a GitLab upgrade adds is noticed).
type State struct {
	GitLabURL string            `json:"gitlab_url"`
	ModelIDs  map[string]string `json:"model_ids"`
	Features  []string          `json:"features"`
	AppliedAt time.Time         `json:"applied_at"`
}

// IDs returns the remembered model record ids.
func (s *State) IDs() []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, id := range s.ModelIDs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Managed returns the features of the last apply, nil if none.
func (s *State) Managed() []string {
	if s == nil {
		return nil
	}
	return s.Features
}

// Record folds an apply's outcome into s.
func (s *State) Record(gitlabURL string, p *Plan, r *Result) {
	s.GitLabURL = gitlabURL
	if s.ModelIDs == nil {
		s.ModelIDs = map[string]string{}
	}
	for n, id := range r.ModelIDs {
		if id != "" {
			s.ModelIDs[n] = id
		}
	}
	s.Features = slices.Clone(p.Snapshot.Features)
	s.AppliedAt = time.Now().UTC()
}

// LoadState reads the state file; a missing file is an empty State.
func LoadState(path string) (*State, error) {
	b, err := statedir.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return &State{}, nil
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s is not valid: %w", path, err)
	}
	return &s, nil
}

// Save writes s atomically, 0600.
func (s *State) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return statedir.WriteFile(path, append(b, '\n'), statedir.SecretMode)
}

// SaveToken keeps the admin token for the drift watch: 0600, written
// atomically, never anywhere but path.
func SaveToken(path, token string) error {
	return statedir.WriteFile(path, []byte(token+"\n"), statedir.SecretMode)
}

// ReadToken reads a token file: one line, surrounding white space trimmed.
// A file others can read is refused, so a token never sits readable.
func ReadToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("GitLab token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("GitLab token file %s is readable by others (mode %#o): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("GitLab token file: %w", err)
	}
	tok := string(b)
	for len(tok) > 0 && (tok[len(tok)-1] == '\n' || tok[len(tok)-1] == '\r' || tok[len(tok)-1] == ' ') {
		tok = tok[:len(tok)-1]
	}
	if tok == "" {
		return "", fmt.Errorf("GitLab token file %s is empty", path)
	}
	return tok, nil
}
