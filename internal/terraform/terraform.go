// Package terraform drives the terraform binary through terraform-exec: it
// finds (or, when asked, installs) terraform, writes a CLI configuration for
// an offline provider mirror, and runs init, plan to a file, apply of exactly
// that plan, destroy (a destroy plan, shown and then applied) and output.
//
// Terraform's output is streamed to the logger line by line, as debug
// records. Cancelling the context sends SIGINT to terraform, which stops
// gracefully and releases its state lock; it is killed only if it has not
// exited after WaitDelay.
//
// Credentials reach terraform only through its environment (Config.Env),
// never through files; values listed in Config.Secrets are masked in every
// logged line and returned error.
package terraform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
)

// DefaultWaitDelay is how long a cancelled terraform gets to stop after
// SIGINT before it is killed.
const DefaultWaitDelay = 30 * time.Second

// CLIConfigName is the CLI configuration file written into the working
// directory when a provider mirror is configured.
const CLIConfigName = "provision.tfrc"

// Config says where and how terraform runs.
type Config struct {
	// Dir is the root module's directory; state and plan files live here.
	// A relative Dir (or Mirror) is taken from the current directory and
	// made absolute by New.
	Dir string
	// ExecPath is the terraform binary (see Find).
	ExecPath string
	// Env is added to this process's environment for terraform (e.g. the
	// provider's credentials). Variables terraform-exec manages itself
	// (TF_LOG*, TF_VAR_*, TF_CLI_ARGS*, ...) are dropped from the inherited
	// environment and refused here.
	Env map[string]string
	// Secrets are masked in logged lines and in errors.
	Secrets []string
	// Mirror is a provider filesystem mirror directory; when set, init
	// installs MirrorProviders from it only (offline) and every other
	// provider directly.
	Mirror string
	// MirrorProviders are the provider addresses taken from Mirror; default
	// registry.terraform.io/telmate/proxmox.
	MirrorProviders []string
	// Parallelism is terraform's -parallelism; 0 keeps terraform's default.
	Parallelism int
	// WaitDelay is how long terraform gets after SIGINT; 0 means
	// DefaultWaitDelay.
	WaitDelay time.Duration
	// Log receives terraform's output, one debug record per line; nil
	// discards.
	Log *slog.Logger
}

// Runner runs terraform commands in one working directory. Its methods
// must not be called concurrently (terraform locks the state anyway).
type Runner struct {
	cfg    Config
	tf     *tfexec.Terraform
	stdout *lineLogger
	stderr *lineLogger
}

// New checks the configuration and prepares a Runner; nothing runs yet.
func New(cfg Config) (*Runner, error) {
	if cfg.Dir == "" {
		return nil, errors.New("terraform: no working directory")
	}
	if cfg.ExecPath == "" {
		return nil, errors.New("terraform: no terraform binary (see Find)")
	}
	// Terraform runs inside Dir: every path it is handed (the CLI
	// configuration, the saved plan, terraform itself for exec) must be
	// absolute, or it would be read relative to Dir instead of to where
	// provision was started.
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("terraform working directory %s: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	if cfg.ExecPath, err = filepath.Abs(cfg.ExecPath); err != nil {
		return nil, fmt.Errorf("terraform binary: %w", err)
	}
	if cfg.Mirror != "" {
		mirror, err := filepath.Abs(cfg.Mirror)
		if err != nil {
			return nil, fmt.Errorf("terraform provider mirror %s: %w", cfg.Mirror, err)
		}
		cfg.Mirror = mirror
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.MirrorProviders) == 0 {
		cfg.MirrorProviders = []string{"registry.terraform.io/telmate/proxmox"}
	}
	if cfg.WaitDelay <= 0 {
		cfg.WaitDelay = DefaultWaitDelay
	}
	tf, err := tfexec.NewTerraform(cfg.Dir, cfg.ExecPath)
	if err != nil {
		return nil, fmt.Errorf("terraform in %s: %w", cfg.Dir, err)
	}
	r := &Runner{cfg: cfg, tf: tf}
	env, err := r.environment()
	if err != nil {
		return nil, err
	}
	if err := tf.SetEnv(env); err != nil {
		return nil, fmt.Errorf("terraform environment: %w", err)
	}
	if err := tf.SetWaitDelay(cfg.WaitDelay); err != nil {
		return nil, fmt.Errorf("terraform: %w", err)
	}
	// Terraform's output is detail for the log file: the caller prints
	// what was planned and applied itself. Errors (stderr) also reach the
	// caller in the returned error.
	r.stdout = &lineLogger{log: cfg.Log, level: slog.LevelDebug, mask: r.mask}
	r.stderr = &lineLogger{log: cfg.Log, level: slog.LevelDebug, mask: r.mask}
	tf.SetStdout(r.stdout)
	tf.SetStderr(r.stderr)
	return r, nil
}

// Dir is the working directory.
func (r *Runner) Dir() string { return r.cfg.Dir }

// environment is os.Environ() without the variables terraform-exec manages,
// plus cfg.Env, CHECKPOINT_DISABLE and, with a mirror, TF_CLI_CONFIG_FILE.
func (r *Runner) environment() (map[string]string, error) {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(tfexec.ProhibitedEnv(map[string]string{k: v})) > 0 {
			continue
		}
		env[k] = v
	}
	if bad := tfexec.ProhibitedEnv(r.cfg.Env); len(bad) > 0 {
		return nil, fmt.Errorf("terraform environment: %s is managed by provision, not settable", bad[0])
	}
	for k, v := range r.cfg.Env {
		env[k] = v
	}
	// Paths in the environment (the CLI configuration, the plugin cache,
	// the CA file the provider trusts) are meant from provision's working
	// directory; terraform would read them from Dir.
	for _, k := range []string{"TF_CLI_CONFIG_FILE", "TF_PLUGIN_CACHE_DIR", "SSL_CERT_FILE"} {
		if v := env[k]; v != "" && !filepath.IsAbs(v) {
			abs, err := filepath.Abs(v)
			if err != nil {
				return nil, fmt.Errorf("terraform environment: %s=%s: %w", k, v, err)
			}
			env[k] = abs
		}
	}
	if f, ok := env["TF_CLI_CONFIG_FILE"]; ok {
		if _, err := os.Stat(f); err != nil {
			// Terraform would warn about it on every command.
			delete(env, "TF_CLI_CONFIG_FILE")
		}
	}
	if r.cfg.Mirror != "" {
		env["TF_CLI_CONFIG_FILE"] = filepath.Join(r.cfg.Dir, CLIConfigName)
	}
	// No update or security-bulletin check with HashiCorp: labs may be air-
	// gapped, and terraform would otherwise reach out on every command.
	env["CHECKPOINT_DISABLE"] = "1"
	return env, nil
}

// mask replaces every secret in s.
func (r *Runner) mask(s string) string {
	for _, sec := range r.cfg.Secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// fail wraps a terraform error: "terraform <cmd> in <dir>: <terraform's
// message>", with secrets masked, still unwrapping to context errors.
func (r *Runner) fail(cmd string, err error) error {
	return &Error{Command: cmd, Dir: r.cfg.Dir, msg: r.mask(strings.TrimSpace(err.Error())), err: err}
}

// Error is a failed terraform command. Its message is terraform's own
// (its exit status and stderr), with secrets masked.
type Error struct {
	Command string // init, plan, apply, ...
	Dir     string
	msg     string
	err     error
}

func (e *Error) Error() string { return fmt.Sprintf("terraform %s in %s: %s", e.Command, e.Dir, e.msg) }

// Unwrap lets errors.Is find context.Canceled.
func (e *Error) Unwrap() error { return e.err }

// lineLogger logs what terraform writes, one record per complete line.
type lineLogger struct {
	log   *slog.Logger
	level slog.Level
	mask  func(string) string

	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// Flush logs a last line that had no newline.
func (l *lineLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}

func (l *lineLogger) emit(line string) {
	line = strings.TrimRight(line, "\r")
	if strings.TrimSpace(line) == "" {
		return
	}
	l.log.Log(context.Background(), l.level, "terraform: "+l.mask(line))
}

func (r *Runner) flush() {
	r.stdout.Flush()
	r.stderr.Flush()
}
