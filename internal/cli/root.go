// Package cli is provision's command line: cobra commands over the pipeline
// and the domain packages. Settings come from flags, then PROVISION_*
// environment variables, then provision.yaml, then defaults.
package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/ui"
	"github.com/fhlab/provision/internal/userfile"
)

// Streams are the program's standard streams: results and summaries go to
// Out; progress lines, warnings and (with -v or --log-level) log records to
// Err.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Settings are the tool's own settings (not the lab's: those are in the
// inventory).
type Settings struct {
	Inventory    string        `mapstructure:"inventory"`
	StateDir     string        `mapstructure:"state-dir"`
	Concurrency  int           `mapstructure:"concurrency"`
	SSHKey       string        `mapstructure:"ssh-key"`
	SSHTimeout   time.Duration `mapstructure:"ssh-timeout"`
	APITimeout   time.Duration `mapstructure:"api-timeout"`
	Terraform    string        `mapstructure:"terraform"`
	TFMirror     string        `mapstructure:"terraform-mirror"`
	DockerSocket string        `mapstructure:"docker-socket"`
	LogLevel     string        `mapstructure:"log-level"`
	LogFormat    string        `mapstructure:"log-format"`
	Verbose      int           `mapstructure:"verbose"`
}

// settingKeys are the keys provision.yaml may hold; anything else is a typo.
var settingKeys = []string{"inventory", "state-dir", "concurrency", "ssh-key", "ssh-timeout", "api-timeout", "docker-socket", "terraform", "terraform-mirror", "log-level", "log-format", "verbose"}

// app is one invocation: its streams, settings and output (see package
// ui): log records go to log (the log file, and the terminal as the
// settings say), progress lines to status.
type app struct {
	streams  Streams
	args     []string
	v        *viper.Viper
	settings Settings
	now      func() time.Time

	log      *slog.Logger // the file at debug, plus the terminal's handler
	fileLog  *slog.Logger // the log file only
	logFile  *ui.LogFile
	noLog    bool // the command writes no log file (it only reads the inventory)
	status   *ui.Status
	redactor *remote.Redactor // secrets learnt on the way (token, join tokens)
}

// noLogFile marks a command that writes no log file: it only reads the
// inventory and prints everything it knows.
const noLogFile = "provision/no-log-file"

func newApp(streams Streams, args []string) *app {
	a := &app{streams: streams, args: args, v: viper.New(), now: time.Now, redactor: remote.NewRedactor()}
	a.logFile = &ui.LogFile{Redact: a.redact}
	fileHandler := slog.NewTextHandler(a.logFile, &slog.HandlerOptions{Level: slog.LevelDebug})
	a.fileLog = slog.New(fileHandler)
	a.status = ui.NewStatus(ui.StatusConfig{Out: streams.Err, Now: a.now, Log: a.fileLog})
	a.log = slog.New(slog.NewMultiHandler(fileHandler, ui.NewWarnHandler(ui.RedactWriter{W: a.status, Redact: a.redact})))
	return a
}

// redact hides every secret known to this run, swarm tokens and private
// keys.
func (a *app) redact(s string) string {
	return ui.RedactPrivateKeys(a.redactor.String(s))
}

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// Run runs provision with args and returns the process exit code.
// Failures print "ERROR: ..." and, when the command wrote a log file,
// "details: <its absolute path>".
func Run(ctx context.Context, args []string, streams Streams) int {
	a := newApp(streams, args)
	defer a.logFile.Close()
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	start := a.now()
	err := root.ExecuteContext(ctx)
	if lerr := a.logFile.Err(); lerr != nil {
		a.log.Warn("the log file is incomplete: " + lerr.Error())
	}
	if err == nil {
		a.fileLog.Debug("done", "took", a.now().Sub(start).Round(time.Millisecond))
		return 0
	}
	a.fileLog.Error("failed", "took", a.now().Sub(start).Round(time.Millisecond), "err", err)
	code := 1
	var ee exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	w := ui.RedactWriter{W: a.status, Redact: a.redact}
	var inv inventory.Problems
	switch {
	case errors.As(err, &inv):
		fmt.Fprintf(w, "ERROR: the inventory has %s:\n", plural(len(inv), "problem"))
		for _, p := range inv {
			fmt.Fprintf(w, "  %s\n", p.Error())
		}
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(w, "ERROR: stopped: %v\n", err)
		code = 130
	default:
		fmt.Fprintf(w, "ERROR: %v\n", err)
	}
	if path := a.logFile.Path(); path != "" {
		fmt.Fprintf(w, "details: %s\n", path)
	}
	return code
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// runbook is the order of the stages `provision apply` runs, from the
// pipeline itself, for help texts.
func runbook() string {
	return strings.Join(stages.Apply(stages.Deps{}).Names(), " → ")
}

func rootLong() string {
	return `provision rebuilds a lab's container cluster from one inventory file:
Proxmox VMs through Terraform, Raspberry Pis from golden images or netboot,
all joined into one Docker Swarm with the host tuning that large swarms need.

Start with an inventory (see inventory/example.yaml), then:
  provision validate  -i lab.yaml     check it; every problem at once
  provision inventory -i lab.yaml     the nodes it describes
  provision render    -i lab.yaml     write each node's cloud-init seed
  provision plan      -i lab.yaml     what each stage would change
  provision apply     -i lab.yaml     run the stages in order:
      ` + runbook() + `

Output: results and summaries on stdout; progress lines on stderr (a
spinner on a terminal); log records on stderr only with -v (info), -vv
(debug) or --log-level. Every record, at debug level, also goes to
<state-dir>/` + ui.LogFileName + fmt.Sprintf(` (rotated at %d MiB, %d kept, mode 0600,
secrets redacted); a failing command prints its path.`, ui.DefaultMaxSize>>20, ui.DefaultKeep) + `

Settings (highest first): flags, PROVISION_* environment variables
(PROVISION_INVENTORY, PROVISION_STATE_DIR, PROVISION_CONCURRENCY, ...),
provision.yaml in the current directory (or --config), then defaults.

Secrets never go in the inventory: the Proxmox API token is read from
$PM_API_TOKEN_ID and $PM_API_TOKEN_SECRET (names configurable).`
}

func (a *app) rootCommand() *cobra.Command {
	var configFile string
	root := &cobra.Command{
		Use:           "provision",
		Short:         "Rebuild a lab's Docker Swarm from one inventory file",
		Long:          rootLong(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.noLog = cmd.Annotations[noLogFile] != ""
			return a.loadSettings(cmd.Root().PersistentFlags(), configFile)
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&configFile, "config", "", "settings file (default ./provision.yaml if present)")
	f.StringP("inventory", "i", "", "inventory file (PROVISION_INVENTORY)")
	f.String("state-dir", "", "where discovered facts are kept (default .provision/<lab name>)")
	f.Int("concurrency", 32, "how many nodes are worked on at once")
	f.String("ssh-key", "", "private key to log in with (default: the inventory's ssh.privateKeyFile)")
	f.Duration("ssh-timeout", 2*time.Minute, "how long to keep trying to reach each node over SSH, retries included (nodes still booting)")
	f.Duration("api-timeout", 30*time.Second, "how long one Proxmox API request may take (GETs are tried 3 times)")
	f.String("docker-socket", "/var/run/docker.sock", "Docker Engine socket on nodes whose SSH login sets no DOCKER_HOST=unix://... (a node's own, as the emulated lab's set, wins)")
	f.String("terraform", "", "terraform binary (default: found on PATH)")
	f.String("terraform-mirror", "", "provider mirror directory for terraform init, for labs without internet (PROVISION_TERRAFORM_MIRROR)")
	f.CountP("verbose", "v", "print log records on stderr: -v from info up, -vv everything (debug)")
	f.String("log-level", "", "print log records on stderr from this level up: debug, info, warn or error (default: none, only warnings as lines; every record is in <state-dir>/provision.log)")
	f.String("log-format", "text", "format of the log records on stderr: text or json")

	root.AddCommand(
		a.validateCommand(),
		a.inventoryCommand(),
		a.renderCommand(),
		a.planCommand(),
		a.applyCommand(),
		a.swarmCommand(),
		a.hostsCommand(),
		a.mirrorCommand(),
		a.verifyCommand(),
		a.destroyCommand(), a.statusCommand(), a.rackCommand(),
		a.labCommand(),
		a.preflightCommand(),
		a.templateCommand(),
		a.vmsCommand(),
		a.imageCommand(),
		a.pveSimCommand(),
		a.flashCommand(),
		a.netbootCommand(),
		a.discoverCommand(),
		a.versionCommand(),
	)
	return root
}

// loadSettings applies the precedence: flags, PROVISION_*, provision.yaml,
// defaults; and sets up the logger.
func (a *app) loadSettings(flags *pflag.FlagSet, configFile string) error {
	v := a.v
	v.SetEnvPrefix("PROVISION")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(flags); err != nil {
		return err
	}
	if configFile == "" {
		if _, err := os.Stat("provision.yaml"); err == nil {
			configFile = "provision.yaml"
		}
	}
	if configFile != "" {
		data, err := userfile.Read(configFile, userfile.MaxSmall)
		if err != nil {
			return fmt.Errorf("read settings %s: %s", configFile, userfile.Reason(err))
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return fmt.Errorf("read settings %s: %w", configFile, err)
		}
		known := map[string]bool{}
		for _, k := range settingKeys {
			known[k] = true
		}
		var unknown []string
		for _, k := range v.AllKeys() {
			if !known[k] && k != "config" {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return fmt.Errorf("read settings %s: unknown setting %s (known: %s)", configFile, strings.Join(unknown, ", "), strings.Join(settingKeys, ", "))
		}
	}
	if err := v.Unmarshal(&a.settings); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	if a.settings.Concurrency < 1 {
		return fmt.Errorf("settings: concurrency must be at least 1, not %d", a.settings.Concurrency)
	}
	if a.settings.APITimeout <= 0 {
		return fmt.Errorf("settings: api-timeout must be more than 0, not %s", a.settings.APITimeout)
	}
	if a.settings.SSHTimeout <= 0 {
		return fmt.Errorf("settings: ssh-timeout must be more than 0, not %s", a.settings.SSHTimeout)
	}
	return a.setUpOutput()
}

// setUpOutput builds the output model from the settings: progress lines
// with a spinner when stderr is a terminal; every record into the log file
// at debug; on stderr, log records only with -v or --log-level, otherwise
// warnings as plain lines.
func (a *app) setUpOutput() error {
	level, show := slog.LevelInfo, a.settings.Verbose > 0
	if a.settings.Verbose > 1 {
		level = slog.LevelDebug
	}
	if a.settings.LogLevel != "" {
		if err := level.UnmarshalText([]byte(a.settings.LogLevel)); err != nil {
			return fmt.Errorf("settings: log-level %q: use debug, info, warn or error", a.settings.LogLevel)
		}
		show = true
	}
	if a.settings.LogFormat != "text" && a.settings.LogFormat != "json" {
		return fmt.Errorf("settings: log-format %q: use text or json", a.settings.LogFormat)
	}
	a.status = ui.NewStatus(ui.StatusConfig{
		Out: a.streams.Err, Now: a.now, Log: a.fileLog,
		Spinner: ui.IsSmartTerminal(a.streams.Err), Width: ui.Width(a.streams.Err),
	})
	term := ui.RedactWriter{W: a.status, Redact: a.redact}
	var termHandler slog.Handler = ui.NewWarnHandler(term)
	if show {
		opts := &slog.HandlerOptions{Level: level}
		if a.settings.LogFormat == "json" {
			termHandler = slog.NewJSONHandler(term, opts)
		} else {
			termHandler = slog.NewTextHandler(term, opts)
		}
	}
	a.log = slog.New(slog.NewMultiHandler(a.fileLog.Handler(), termHandler))
	return nil
}

// openLog opens the log file in the state directory with a line marking
// this run. A log that cannot be written is a warning, not a failure.
func (a *app) openLog(stateDir string) {
	if a.noLog {
		return
	}
	args := make([]string, len(a.args))
	for i, s := range a.args {
		args[i] = strconv.Quote(s)
		if s != "" && !strings.ContainsAny(s, " \t\n\"'\\$") {
			args[i] = s
		}
	}
	marker := fmt.Sprintf("===== %s provision %s (pid %d)", a.now().UTC().Format(time.RFC3339), strings.Join(args, " "), os.Getpid())
	if err := a.logFile.Open(stateDir, marker); err != nil {
		a.log.Warn("no log file: "+err.Error(), "dir", stateDir)
	}
}

// loadInventory loads the inventory named by the settings.
func (a *app) loadInventory() (*inventory.Inventory, error) {
	if a.settings.Inventory == "" {
		return nil, exitError{2, errors.New("no inventory: pass -i FILE, set PROVISION_INVENTORY, or put inventory: in provision.yaml")}
	}
	inv, err := inventory.Load(a.settings.Inventory)
	if err != nil {
		return nil, err
	}
	if p := inv.Lab.Proxmox; p != nil {
		a.redactor.Add(os.Getenv(p.TokenSecretEnv))
	}
	a.openLog(a.stateDir(inv))
	return inv, nil
}

// stateDir is where the lab's facts live.
func (a *app) stateDir(inv *inventory.Inventory) string {
	if a.settings.StateDir != "" {
		return a.settings.StateDir
	}
	return filepath.Join(".provision", inv.Lab.Metadata.Name)
}
