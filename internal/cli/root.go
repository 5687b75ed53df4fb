// Package cli is provision's command line: cobra commands over the pipeline
// and the domain packages. Settings come from flags, then PROVISION_*
// environment variables, then provision.yaml, then defaults.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/fhlab/provision/internal/inventory"
)

// Streams are the program's standard streams: results go to Out, progress
// and logs to Err.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Settings are the tool's own settings (not the lab's: those are in the
// inventory).
type Settings struct {
	Inventory    string `mapstructure:"inventory"`
	StateDir     string `mapstructure:"state-dir"`
	Concurrency  int    `mapstructure:"concurrency"`
	SSHKey       string `mapstructure:"ssh-key"`
	Terraform    string `mapstructure:"terraform"`
	TFMirror     string `mapstructure:"terraform-mirror"`
	DockerSocket string `mapstructure:"docker-socket"`
	LogLevel     string `mapstructure:"log-level"`
	LogFormat    string `mapstructure:"log-format"`
}

// settingKeys are the keys provision.yaml may hold; anything else is a typo.
var settingKeys = []string{"inventory", "state-dir", "concurrency", "ssh-key", "docker-socket", "terraform", "terraform-mirror", "log-level", "log-format"}

// app is one invocation: its streams, settings and logger.
type app struct {
	streams  Streams
	v        *viper.Viper
	settings Settings
	log      *slog.Logger
	now      func() time.Time
}

func newApp(streams Streams) *app {
	return &app{streams: streams, v: viper.New(), now: time.Now}
}

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// Run runs provision with args and returns the process exit code.
func Run(ctx context.Context, args []string, streams Streams) int {
	root := newApp(streams).rootCommand()
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var inv inventory.Problems
	switch {
	case errors.As(err, &inv):
		fmt.Fprintf(streams.Err, "ERROR: the inventory has %s:\n", plural(len(inv), "problem"))
		for _, p := range inv {
			fmt.Fprintf(streams.Err, "  %s\n", p.Error())
		}
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(streams.Err, "ERROR: stopped: %v\n", err)
		return 130
	default:
		fmt.Fprintf(streams.Err, "ERROR: %v\n", err)
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

const rootLong = `provision rebuilds a lab's container cluster from one inventory file:
Proxmox VMs through Terraform, Raspberry Pis from golden images or netboot,
all joined into one Docker Swarm with the host tuning that large swarms need.

Start with an inventory (see inventory/example.yaml), then:
  provision validate  -i lab.yaml     check it; every problem at once
  provision inventory -i lab.yaml     the nodes it describes
  provision render    -i lab.yaml     write each node's cloud-init seed
  provision plan      -i lab.yaml     what each stage would change

Settings (highest first): flags, PROVISION_* environment variables
(PROVISION_INVENTORY, PROVISION_STATE_DIR, PROVISION_CONCURRENCY, ...),
provision.yaml in the current directory (or --config), then defaults.

Secrets never go in the inventory: the Proxmox API token is read from
$PM_API_TOKEN_ID and $PM_API_TOKEN_SECRET (names configurable).`

func (a *app) rootCommand() *cobra.Command {
	var configFile string
	root := &cobra.Command{
		Use:           "provision",
		Short:         "Rebuild a lab's Docker Swarm from one inventory file",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.loadSettings(cmd.Root().PersistentFlags(), configFile)
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&configFile, "config", "", "settings file (default ./provision.yaml if present)")
	f.StringP("inventory", "i", "", "inventory file (PROVISION_INVENTORY)")
	f.String("state-dir", "", "where discovered facts are kept (default .provision/<lab name>)")
	f.Int("concurrency", 32, "how many nodes are worked on at once")
	f.String("ssh-key", "", "private key to log in with (default: the inventory's ssh.privateKeyFile)")
	f.String("docker-socket", "/var/run/docker.sock", "Docker Engine socket on the nodes (the emulated lab records its own)")
	f.String("terraform", "", "terraform binary (default: found on PATH)")
	f.String("terraform-mirror", "", "provider mirror directory for terraform init, for labs without internet (PROVISION_TERRAFORM_MIRROR)")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("log-format", "text", "text or json")

	root.AddCommand(
		a.validateCommand(),
		a.inventoryCommand(),
		a.renderCommand(),
		a.planCommand(),
		a.applyCommand(),
		a.swarmCommand(),
		a.verifyCommand(),
		a.labCommand(),
		a.preflightCommand(),
		a.templateCommand(),
		a.vmsCommand(),
		a.pveSimCommand(),
		a.flashCommand(),
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
		v.SetConfigFile(configFile)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.settings.LogLevel)); err != nil {
		return fmt.Errorf("settings: log-level %q: use debug, info, warn or error", a.settings.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.settings.LogFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.streams.Err, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.streams.Err, opts))
	default:
		return fmt.Errorf("settings: log-format %q: use text or json", a.settings.LogFormat)
	}
	return nil
}

// loadInventory loads the inventory named by the settings.
func (a *app) loadInventory() (*inventory.Inventory, error) {
	if a.settings.Inventory == "" {
		return nil, exitError{2, errors.New("no inventory: pass -i FILE, set PROVISION_INVENTORY, or put inventory: in provision.yaml")}
	}
	return inventory.Load(a.settings.Inventory)
}

// stateDir is where the lab's facts live.
func (a *app) stateDir(inv *inventory.Inventory) string {
	if a.settings.StateDir != "" {
		return a.settings.StateDir
	}
	return filepath.Join(".provision", inv.Lab.Metadata.Name)
}
