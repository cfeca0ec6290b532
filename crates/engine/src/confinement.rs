//! What confines every sandbox and container beyond its namespaces, in one place for
//! both: a seccomp allowlist modelled on Docker's default profile (moby
//! `profiles/seccomp/default_linux.go`), no new privileges, a pids limit, and the
//! kernel files Docker hides or makes read-only. Anything not allowed fails with
//! EPERM, as under Docker.

use std::collections::HashSet;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, Capability, Linux, LinuxPidsBuilder, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall,
    LinuxSyscallBuilder, Process,
};

/// Who is confined.
#[derive(Debug, Clone, Copy)]
pub enum Workload<'a> {
    /// A function sandbox: no capabilities, and stricter than Docker: no tracing of
    /// other processes and no new namespaces of any kind.
    Sandbox,
    /// A container holding `capabilities`: Docker's default profile, which allows
    /// what each capability it holds needs.
    Container(&'a HashSet<Capability>),
}

impl Workload<'_> {
    /// Processes and threads at most: Lambda's quota for a sandbox; for a container,
    /// where Docker sets no limit, enough for a busy JVM while a fork bomb stays a
    /// container's problem.
    pub fn pids_max(self) -> i64 {
        match self {
            Workload::Sandbox => 1024,
            Workload::Container(_) => 4096,
        }
    }
}

/// Confines a bundle's process and its Linux settings for `workload`.
pub fn confine(
    process: &mut Process,
    linux: &mut Linux,
    workload: Workload,
) -> Result<(), OciSpecError> {
    process.set_no_new_privileges(Some(true));
    linux.set_seccomp(Some(seccomp(workload)?));
    linux.set_masked_paths(Some(to_strings(MASKED_PATHS)));
    linux.set_readonly_paths(Some(to_strings(READONLY_PATHS)));
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_pids(Some(
        LinuxPidsBuilder::default()
            .limit(workload.pids_max())
            .build()?,
    ));
    linux.set_resources(Some(resources));
    Ok(())
}

/// Kernel files that leak host state or let a container touch hardware: Docker's.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Kernel files readable but never writable: Docker's.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The calls every workload may make: Docker's unconditional allowlist, less those
/// a sandbox gives up ([`CONTAINER_ONLY`]) and `socket`, `personality` and `clone`,
/// which are allowed for some arguments only.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// What Docker allows every container and a sandbox does without: tracing and
/// reading other processes, and `unshare` (a user namespace needs no capability).
const CONTAINER_ONLY: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace", "unshare"];

/// The calls only this architecture has.
const ARCH_ALLOWED: &[&str] = if cfg!(target_arch = "aarch64") {
    &[
        "arm_fadvise64_64",
        "arm_sync_file_range",
        "sync_file_range2",
        "breakpoint",
        "cacheflush",
        "set_tls",
    ]
} else {
    &["arch_prctl", "modify_ldt"]
};

/// The calls a capability brings, as Docker's default profile grants them.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// `clone` flags that create namespaces; without CAP_SYS_ADMIN `clone` is allowed
/// only without them.
const NAMESPACE_FLAGS: u64 = 0x0002_0000 // CLONE_NEWNS
    | 0x0200_0000 // CLONE_NEWCGROUP
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x1000_0000 // CLONE_NEWUSER
    | 0x2000_0000 // CLONE_NEWPID
    | 0x4000_0000; // CLONE_NEWNET

/// The `personality` domains Docker allows: Linux, its 32-bit variant, with
/// `UNAME26`, and the query (0xffffffff).
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

const AF_VSOCK: u64 = 40;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

fn to_strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(
    names: &[&str],
    action: LinuxSeccompAction,
    arg: Option<(usize, LinuxSeccompOperator, u64, u64)>,
) -> Result<LinuxSyscall, OciSpecError> {
    let mut rule = LinuxSyscallBuilder::default()
        .names(to_strings(names))
        .action(action)
        .build()?;
    if let Some((index, op, value, value_two)) = arg {
        rule.set_args(Some(vec![
            LinuxSeccompArgBuilder::default()
                .index(index)
                .op(op)
                .value(value)
                .value_two(value_two)
                .build()?,
        ]));
    }
    Ok(rule)
}

/// The seccomp profile of `workload`; its architectures are the native one and
/// those a binary of it may also run as (32-bit x86 and x32, or 32-bit ARM), as
/// Docker lists them.
pub fn seccomp(workload: Workload) -> Result<LinuxSeccomp, OciSpecError> {
    use LinuxSeccompAction::{ScmpActAllow as Allow, ScmpActErrno as Errno};
    use LinuxSeccompOperator::{ScmpCmpEq as Eq, ScmpCmpMaskedEq as MaskedEq, ScmpCmpNe as Ne};
    let capabilities = match workload {
        Workload::Sandbox => None,
        Workload::Container(capabilities) => Some(capabilities),
    };
    let mut allowed: Vec<&str> = ALLOWED.iter().chain(ARCH_ALLOWED).copied().collect();
    if let Some(capabilities) = capabilities {
        allowed.extend(CONTAINER_ONLY);
        for (capability, names) in BY_CAPABILITY {
            if capabilities.contains(capability) {
                allowed.extend(*names);
            }
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    let mut syscalls = vec![
        rule(&allowed, Allow, None)?,
        rule(&["socket"], Allow, Some((0, Ne, AF_VSOCK, 0)))?,
    ];
    for personality in PERSONALITIES {
        syscalls.push(rule(
            &["personality"],
            Allow,
            Some((0, Eq, *personality, 0)),
        )?);
    }
    if !capabilities.is_some_and(|caps| caps.contains(&Capability::SysAdmin)) {
        syscalls.push(rule(
            &["clone"],
            Allow,
            Some((0, MaskedEq, NAMESPACE_FLAGS, 0)),
        )?);
        // clone3 passes its flags in memory a filter cannot read; ENOSYS makes libc
        // fall back to clone, whose flags it can.
        let mut clone3 = rule(&["clone3"], Errno, None)?;
        clone3.set_errno_ret(Some(ENOSYS));
        syscalls.push(clone3);
    }
    let architectures = if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    };
    LinuxSeccompBuilder::default()
        .default_action(Errno)
        .default_errno_ret(EPERM)
        .architectures(architectures)
        .syscalls(syscalls)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(profile: &LinuxSeccomp) -> HashSet<String> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|rule| rule.action() == LinuxSeccompAction::ScmpActAllow)
            .filter(|rule| rule.args().is_none())
            .flat_map(|rule| rule.names().clone())
            .collect()
    }

    #[test]
    fn everything_not_listed_fails_with_eperm() {
        for workload in [Workload::Sandbox, Workload::Container(&HashSet::new())] {
            let profile = seccomp(workload).unwrap();
            assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
            assert_eq!(profile.default_errno_ret(), Some(EPERM));
            let allowed = allowed(&profile);
            for denied in ["keyctl", "add_key", "mount", "bpf", "kexec_load", "setns"] {
                assert!(!allowed.contains(denied), "{denied} is allowed");
            }
            assert!(allowed.contains("read") && allowed.contains("execve"));
        }
    }

    #[test]
    fn a_sandbox_is_stricter_than_a_container() {
        let sandbox = allowed(&seccomp(Workload::Sandbox).unwrap());
        let container = allowed(&seccomp(Workload::Container(&HashSet::new())).unwrap());
        for name in CONTAINER_ONLY {
            assert!(!sandbox.contains(*name) && container.contains(*name));
        }
        assert!(sandbox.is_subset(&container));
    }

    #[test]
    fn capabilities_bring_their_calls_as_docker_grants_them() {
        let chroot: HashSet<Capability> = [Capability::SysChroot].into();
        let allowed_chroot = allowed(&seccomp(Workload::Container(&chroot)).unwrap());
        assert!(allowed_chroot.contains("chroot") && !allowed_chroot.contains("mount"));
        let admin: HashSet<Capability> = [Capability::SysAdmin].into();
        let profile = seccomp(Workload::Container(&admin)).unwrap();
        assert!(allowed(&profile).contains("mount") && allowed(&profile).contains("clone3"));
        // With CAP_SYS_ADMIN, clone is allowed whatever its flags; without, only
        // without namespace flags.
        let guarded_clone = |profile: &LinuxSeccomp| {
            profile
                .syscalls()
                .iter()
                .flatten()
                .any(|rule| rule.names().contains(&"clone".to_owned()) && rule.args().is_some())
        };
        assert!(!guarded_clone(&profile));
        assert!(guarded_clone(&seccomp(Workload::Sandbox).unwrap()));
    }

    #[test]
    fn confining_sets_every_part() {
        let mut process = Process::default();
        let mut linux = Linux::default();
        confine(&mut process, &mut linux, Workload::Sandbox).unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        assert!(linux.seccomp().is_some());
        let masked = linux.masked_paths().clone().unwrap();
        assert!(masked.contains(&"/proc/kcore".to_owned()));
        let readonly = linux.readonly_paths().clone().unwrap();
        assert!(readonly.contains(&"/proc/sys".to_owned()));
        let pids = linux.resources().as_ref().unwrap().pids().as_ref().unwrap();
        assert_eq!(pids.limit(), Workload::Sandbox.pids_max());
    }
}
