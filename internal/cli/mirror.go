package cli

import (
	"fmt"
	"net/url"
	"os/exec"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/hosts"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/mirror"
	"github.com/fhlab/provision/internal/stages"
)

func (a *app) mirrorCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mirror build|serve",
		Short: "The lab's own signed apt repository, for air-gapped hosts",
		Long: `A local apt repository of exactly the packages the nodes need: the Docker
package and the rest user-data installs (hostTuning), with their Depends and
Pre-Depends, for each architecture of the inventory's hosts (--arch for
others); Essential packages,
which every Debian has, are left out. It lives in mirror.dir (default
<state-dir>/mirror): repo/ is served (dists/provision, pool/main, the public
key lab-archive-key.asc); the signing key (signing-key.asc, 0600, made on
the first build) stays beside it and is never served.`,
	}
	cmd.AddCommand(a.mirrorBuildCommand(), a.mirrorServeCommand())
	return cmd
}

func (a *app) mirrorBuildCommand() *cobra.Command {
	var debDirs []string
	var fromInstalled bool
	var archFlag []string
	cmd := &cobra.Command{
		Use:   "build -i FILE",
		Short: "Make the repository from .deb files (and packages installed here)",
		Long: `Resolve the packages for each architecture of the inventory's nodes from the
.deb files in the --debs directories (for example /var/cache/apt/archives,
or what 'apt-get download' fetched on a connected machine) and, with
--from-installed, from the packages installed on this machine, repacked
with dpkg-repack (this machine's architecture only; repacked files are kept
in <dir>/repacked). Writes Packages, Release and InRelease signed with the
lab key. A package no source has is an error naming who needs it.`,
		Example: "  provision mirror build -i lab.yaml --debs /var/cache/apt/archives --from-installed",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, _, err := a.session("")
			if err != nil {
				return err
			}
			archs := map[string]bool{}
			for _, n := range env.Inventory.Nodes {
				if n.Kind == inventory.KindHost || env.Inventory.Lab.Mirror != nil && env.Inventory.Lab.Mirror.Nodes {
					archs[n.Arch] = true
				}
			}
			if len(archFlag) > 0 {
				archs = map[string]bool{}
				for _, a := range archFlag {
					archs[a] = true
				}
			}
			if len(archs) == 0 {
				return exitError{2, fmt.Errorf("the inventory has no hosts: name the architectures with --arch")}
			}
			cfg := mirror.Config{
				Dir: stages.MirrorDir(env), Lab: env.Inventory.Lab.Metadata.Name,
				Packages: hosts.Packages(&env.Inventory.Lab.HostTuning),
				DebDirs:  debDirs, FromInstalled: fromInstalled, Now: a.now,
			}
			for arch := range archs {
				cfg.Archs = append(cfg.Archs, arch)
			}
			sort.Strings(cfg.Archs)
			if fromInstalled {
				out, err := exec.CommandContext(cmd.Context(), "dpkg", "--print-architecture").Output()
				if err != nil {
					return fmt.Errorf("mirror: dpkg --print-architecture: %w", err)
				}
				cfg.NativeArch = strings.TrimSpace(string(out))
			}
			sum, err := mirror.Build(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			for _, arch := range cfg.Archs {
				fmt.Fprintf(env.Out, "%s: %d packages: %s\n", arch, len(sum.Packages[arch]), strings.Join(sum.Packages[arch], " "))
			}
			if sum.KeyCreated {
				fmt.Fprintf(env.Out, "made the lab signing key %s/%s (0600)\n", cfg.Dir, mirror.KeyFile)
			}
			fmt.Fprintf(env.Out, "repository %s\n", sum.Repo)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&debDirs, "debs", nil, "directories of .deb files to take packages from")
	cmd.Flags().StringSliceVar(&archFlag, "arch", nil, "Debian architectures (default: those of the inventory's hosts, which install from the mirror, and with mirror.nodes those of every node)")
	cmd.Flags().BoolVar(&fromInstalled, "from-installed", false, "also take packages installed on this machine (dpkg-repack)")
	return cmd
}

func (a *app) mirrorServeCommand() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve -i FILE",
		Short: "Serve the repository over HTTP until stopped (Ctrl-C)",
		Long: `Serve repo/ of the mirror directory, read-only, on --listen (default the
host and port of the inventory's mirror.url).`,
		Example: "  provision mirror serve -i lab.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, _, err := a.session("")
			if err != nil {
				return err
			}
			if listen == "" {
				m := env.Inventory.Lab.Mirror
				if m == nil {
					return exitError{2, fmt.Errorf("the inventory has no mirror.url: give --listen ADDR:PORT")}
				}
				u, _ := url.Parse(m.URL)
				listen = u.Host
				if u.Port() == "" {
					listen += ":80"
				}
			}
			srv, err := mirror.Listen(stages.MirrorDir(env), listen, a.log)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Out, "serving %s on http://%s/\n", stages.MirrorDir(env), srv.Addr())
			return srv.Serve(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve on (default: mirror.url's host and port)")
	return cmd
}
