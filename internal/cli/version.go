package cli

import (
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/render"
)

type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Date    string `json:"date,omitempty"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

// resolveVersion fills in what ldflags did not set from the Go build info
// (module version, VCS revision), so `go install` builds still say something true.
func resolveVersion(b Build) versionInfo {
	v := versionInfo{Version: b.Version, Commit: b.Commit, Date: b.Date,
		Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if v.Version == "" || v.Commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v.Version = bi.Main.Version
			}
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					if v.Commit == "" {
						v.Commit = s.Value
					}
				case "vcs.time":
					if v.Date == "" {
						v.Date = s.Value
					}
				}
			}
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	return v
}

func versionLine(b Build) string {
	v := resolveVersion(b)
	commit := v.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	return "netops " + v.Version + " (commit " + commit + ", " + v.Go + " " + v.OS + "/" + v.Arch + ")"
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and Go version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			v := resolveVersion(a.build)
			if f == render.JSON {
				return render.WriteJSON(a.ios.Out, v)
			}
			var r render.Record
			r.Set("version", v.Version)
			r.Set("commit", v.Commit)
			if v.Date != "" {
				r.Set("date", v.Date)
			}
			r.Set("go", v.Go)
			r.Set("platform", v.OS+"/"+v.Arch)
			return r.WriteText(a.ios.Out, a.mode())
		},
	}
}
