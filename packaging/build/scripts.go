package build

import (
	"fmt"
	"os"
	"path/filepath"
)

// ScriptNames are the maintainer scripts, by their deb names. Each file
// packaging/scripts/<name>.sh also serves as the rpm's matching scriptlet
// (%pre, %post, %preun, %postun).
var ScriptNames = []string{"preinst", "postinst", "prerm", "postrm"}

// scripts returns the path of each maintainer script by name, after
// checking that it exists.
func scripts(repo string) (map[string]string, error) {
	out := map[string]string{}
	for _, name := range ScriptNames {
		path := filepath.Join(repo, "packaging", "scripts", name+".sh")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("maintainer script %s: %w", name, err)
		}
		out[name] = path
	}
	return out, nil
}
