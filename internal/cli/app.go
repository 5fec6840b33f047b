package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/iostreams"
	"github.com/netops-dev/netops/internal/render"
	"github.com/netops-dev/netops/internal/store"
)

// globalOptions are the persistent flags every command has.
type globalOptions struct {
	configPath string
	output     string
	quiet      bool
	verbose    bool
	noColor    bool
}

// app is what one invocation shares between its commands: streams, flags, the
// viper instance for env/flag overrides, and lazily loaded config and store.
type app struct {
	ios    *iostreams.IOStreams
	lookup iostreams.Env
	build  Build
	v      *viper.Viper
	opts   globalOptions
	log    *slog.Logger
	root   *cobra.Command

	cfg     *config.Config
	cfgPath string
	st      *store.Store
}

func newApp(ios *iostreams.IOStreams, lookup iostreams.Env, build Build) *app {
	v := viper.New()
	v.SetEnvPrefix("NETOPS")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	for _, k := range config.ScalarKeys() {
		_ = v.BindEnv(k) // only fails for an empty key
	}
	return &app{ios: ios, lookup: lookup, build: build, v: v,
		log: newLogger(ios.ErrOut, false, false)}
}

func (a *app) getenv(k string) string {
	if a.lookup == nil {
		return ""
	}
	s, _ := a.lookup(k)
	return s
}

// setup runs before every command: logger, color, output format default.
func (a *app) setup() {
	a.log = newLogger(a.ios.ErrOut, a.opts.verbose, a.opts.quiet)
	if a.opts.noColor {
		a.ios.DisableColor()
	}
}

func (a *app) close() {
	if a.st != nil {
		if err := a.st.Close(); err != nil {
			a.log.Warn("closing state database", "err", err)
		}
		a.st = nil
	}
}

// format returns the --output format, checked against what the command accepts.
func (a *app) format(allowed ...render.Format) (render.Format, error) {
	f, err := render.ParseFormat(a.opts.output, allowed...)
	if err != nil {
		return "", usageErrorf(fmt.Errorf("--output: %w", err))
	}
	return f, nil
}

// mode is how text output is laid out on this stdout.
func (a *app) mode() render.Mode {
	return render.Mode{TTY: a.ios.IsStdoutTTY(), Color: a.ios.ColorEnabled()}
}

// configFile returns the config file netops would use ("" when none exists).
func (a *app) configFile() string {
	if a.cfgPath != "" {
		return a.cfgPath
	}
	cwd, _ := os.Getwd()
	home, _ := os.UserHomeDir()
	a.cfgPath = config.Locate(a.opts.configPath, cwd, home, "/etc/netops")
	return a.cfgPath
}

// config loads the config once: file (or defaults), then NETOPS_* environment and
// flag overrides, then validation.
func (a *app) config() (*config.Config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	path := a.configFile()
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := a.applyOverrides(cfg); err != nil {
		return nil, err
	}
	a.log.Debug("config loaded", "file", path)
	a.cfg = cfg
	return cfg, nil
}

// applyOverrides sets every scalar key given by a flag or NETOPS_* variable.
func (a *app) applyOverrides(cfg *config.Config) error {
	changed := false
	for _, k := range config.ScalarKeys() {
		if !a.v.IsSet(k) {
			continue
		}
		source := "NETOPS_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(k))
		if f := a.flagFor(k); f != "" {
			source = f
		}
		if err := cfg.Set(k, a.v.GetString(k), source); err != nil {
			return err
		}
		changed = true
	}
	if changed {
		return cfg.Validate()
	}
	return nil
}

// flagKeys maps config keys to the global flags that override them.
func flagKeys() map[string]string {
	return map[string]string{
		"state_dir":    "state-dir",
		"backend.kind": "backend",
		"backend.url":  "backend-url",
	}
}

// flagFor returns "--flag" when key was set by a changed flag, else "".
func (a *app) flagFor(key string) string {
	name, ok := flagKeys()[key]
	if !ok || a.root == nil {
		return ""
	}
	if f := a.root.PersistentFlags().Lookup(name); f != nil && f.Changed {
		return "--" + name
	}
	return ""
}

// stateDir resolves the state directory: --state-dir / NETOPS_STATE_DIR / config,
// else the default for this user.
func (a *app) stateDir() (string, error) {
	cfg, err := a.config()
	if err != nil {
		return "", err
	}
	if cfg.StateDir != "" {
		return expandHome(cfg.StateDir), nil
	}
	return store.DefaultDir(os.Geteuid(), a.getenv), nil
}

// store opens the local state database once per invocation.
func (a *app) store(ctx context.Context) (*store.Store, error) {
	if a.st != nil {
		return a.st, nil
	}
	dir, err := a.stateDir()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, dir)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, &stateError{err: err}
	}
	a.st = st
	return st, nil
}

func expandHome(p string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return config.ExpandHome(p, home)
}
