/**
 * The sandbox's seccomp filter: system calls a function never needs, which are how a process
 * attacks the kernel or leaves its namespaces, answer EPERM; an internet socket (AF_INET,
 * AF_INET6, AF_PACKET) answers EACCES (a sandbox talks only over unix sockets: to the host,
 * and out through the egress proxy), and so does creating a process (fork, vfork, clone
 * without CLONE_THREAD: EPERM; clone3: ENOSYS, the C library then uses clone): a function's
 * sandbox runs Node's threads and nothing else, which bounds a fork bomb even where no pids
 * cgroup can be made. Plugin sandboxes (`inet: true`) keep internet sockets (for their
 * loopback relay) and process creation (a plugin may run helpers; the pids cgroup bounds it). Everything else is allowed (a deny list: Node needs a
 * wide and changing set of calls). The BPF program is built once per host process by
 * libseccomp's Python binding (Debian `python3-seccomp`, which .ci/run installs) and handed to
 * bwrap as `--seccomp <fd>`. Where it cannot be built, sandboxes run without it and the host
 * says so once (the namespaces, uid and permission model still stand).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

/** Denied with EPERM. Unknown names (another architecture, an older kernel) are skipped. */
export const DENIED_SYSCALLS = [
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp',
  'mount', 'umount2', 'pivot_root', 'chroot', 'move_mount', 'open_tree', 'fsopen', 'fsmount', 'fsconfig', 'fspick',
  'unshare', 'setns', 'bpf', 'perf_event_open', 'userfaultfd',
  'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'keyctl', 'add_key', 'request_key',
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module',
  'swapon', 'swapoff', 'reboot', 'acct', 'syslog', 'quotactl', 'vhangup', 'iopl', 'ioperm',
  'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex',
  'open_by_handle_at', 'name_to_handle_at', 'lookup_dcookie', 'fanotify_init',
] as const;

const SCRIPT = `
import errno, socket, sys
import seccomp
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
for name in sys.argv[2].split(','):
    try:
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    except Exception:
        pass
function_sandbox = sys.argv[3] == 'deny-inet'
families = (socket.AF_INET, socket.AF_INET6, socket.AF_PACKET) if function_sandbox else (socket.AF_PACKET,)
for family in families:
    f.add_rule(seccomp.ERRNO(errno.EACCES), 'socket', seccomp.Arg(0, seccomp.EQ, family))
if function_sandbox:
    # No new processes, threads only: fork, vfork, and clone without CLONE_THREAD are EPERM;
    # clone3 (whose flags a filter cannot see) is ENOSYS, so the C library falls back to clone.
    CLONE_THREAD = 0x10000
    f.add_rule(seccomp.ERRNO(errno.EPERM), 'fork')
    f.add_rule(seccomp.ERRNO(errno.EPERM), 'vfork')
    f.add_rule(seccomp.ERRNO(errno.EPERM), 'clone', seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), 'clone3')
with open(sys.argv[1], 'wb') as out:
    f.export_bpf(out)
`;

const built = new Map<string, { file: string | null; reason: string }>();

/**
 * The BPF file for bwrap's `--seccomp` (built on first call into `dir`), or null with the
 * reason it could not be built. `inet: true` (plugin sandboxes) allows AF_INET and AF_INET6
 * sockets: a plugin reaches the ABI over HTTP on its own loopback (the relay of plugin-entry.ts);
 * its network namespace has nothing else. AF_PACKET stays denied.
 */
export function seccompFilter(dir: string, options: { inet?: boolean } = {}): { file: string | null; reason: string } {
  const variant = options.inet === true ? 'allow-inet' : 'deny-inet';
  const known = built.get(variant);
  if (known !== undefined) return known;
  const file = path.join(dir, variant === 'deny-inet' ? 'seccomp.bpf' : 'seccomp-inet.bpf');
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  let result: { file: string | null; reason: string };
  try {
    execFileSync(python, ['-c', SCRIPT, file, DENIED_SYSCALLS.join(','), variant], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
    result = { file, reason: '' };
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim().split('\n').pop() ?? '';
    result = { file: null, reason: `no seccomp filter: ${stderr || (err as Error).message} (install python3-seccomp)` };
  }
  built.set(variant, result);
  return result;
}
