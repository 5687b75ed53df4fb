// Package ui is provision's output model, shared by every command:
//
//   - results and a short summary go to stdout (the caller writes them);
//   - progress goes to stderr as Status lines: " • step ..." when a step
//     starts, indented sub-steps, " ✓ step (1.2s)" or " ✗ step" when it
//     ends; with a spinner only when stderr is a terminal;
//   - log records (log/slog) reach the terminal only when asked for (-v,
//     --log-level); at the default level only warnings are shown, as plain
//     " ! ..." lines;
//   - every record, at debug level, goes to an always-on LogFile in the
//     state directory (rotated, mode 0600, secrets redacted), whose path is
//     printed when a command fails.
//
// It holds no package-level mutable state: the CLI builds one of each per
// invocation and passes them down.
package ui
