package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// commonMarker is the line of each script that the shared functions replace.
const commonMarker = "@COMMON@"

// writeScripts assembles the maintainer scripts into dir: each of
// packaging/scripts/{preinst,postinst,prerm,postrm}.sh with common.sh pasted
// in at its @COMMON@ line. It returns the paths by script name.
func writeScripts(repo, dir string) (map[string]string, error) {
	src := filepath.Join(repo, "packaging", "scripts")
	common, err := os.ReadFile(filepath.Join(src, "common.sh"))
	if err != nil {
		return nil, fmt.Errorf("read shared script functions: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create script directory: %w", err)
	}
	out := map[string]string{}
	for _, name := range []string{"preinst", "postinst", "prerm", "postrm"} {
		b, err := os.ReadFile(filepath.Join(src, name+".sh"))
		if err != nil {
			return nil, fmt.Errorf("read %s script: %w", name, err)
		}
		s := string(b)
		if strings.Count(s, commonMarker+"\n") != 1 {
			return nil, fmt.Errorf("%s.sh must have exactly one %s line", name, commonMarker)
		}
		s = strings.Replace(s, commonMarker+"\n", string(common), 1)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(s), 0o755); err != nil {
			return nil, fmt.Errorf("write %s script: %w", name, err)
		}
		out[name] = path
	}
	return out, nil
}
