/**
 * Permission bits of everything Spillway creates in a data directory (docs/OPERATIONS.md, "The data
 * directory"): files 0600 and directories 0700 unless the broker is configured otherwise
 * (`BrokerOptions.fileMode` / `directoryMode`). Every create passes these modes explicitly, so the
 * process umask cannot widen them (a umask of 0 still gives 0600/0700); a umask may only narrow them,
 * as always. Process-wide: brokers of one process share the last modes set.
 */
export const fileModes = { file: 0o600, directory: 0o700 };

/** Sets the modes used from now on (each a permission mask in [0, 0o777]). */
export function setFileModes(file: number, directory: number): void {
  fileModes.file = file;
  fileModes.directory = directory;
}
