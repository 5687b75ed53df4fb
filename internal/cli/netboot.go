package cli

import "github.com/spf13/cobra"

// netbootCommand is the netboot group. (Minimal on this branch: the
// roots, reset, install and eeprom commands of netboot_root.go.)
func (a *app) netbootCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "netboot",
		Short: "Boot Raspberry Pi racks from the network: roots over NBD, units, bootloader config",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.netbootRootCommands()...)
	return cmd
}
