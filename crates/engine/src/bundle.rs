//! OCI runtime bundles: the `config.json` every sandbox is created from, generated
//! with `oci-spec`, and the near-empty root filesystem it mounts things onto.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder, get_default_mounts,
};

use crate::confinement::{Workload, confine};

/// The unprivileged user code runs as (Lambda's `sbx_user1051`).
pub const SANDBOX_UID: u32 = 993;
pub const SANDBOX_GID: u32 = 990;
/// Open files per process, Lambda's quota.
const NOFILE: u64 = 1024;

/// Where the init process is mounted inside every sandbox.
pub const INIT_PATH: &str = "/var/rapid/init";

/// A host directory shown read-only inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadOnly {
    pub source: PathBuf,
    pub target: PathBuf,
}

/// Everything a bundle is made of; all host paths.
pub struct BundleSpec<'a> {
    pub rootfs: &'a Path,
    pub init: &'a Path,
    pub etc: &'a Path,
    pub mounts: &'a [ReadOnly],
    /// Empty host directories whose later mounts propagate into the sandbox at
    /// `/var/task` and `/opt`.
    pub task_slot: &'a Path,
    pub opt_slot: &'a Path,
    pub tmp_mb: u64,
    pub cgroup: &'a str,
    /// The root is an image's: nothing of the host's /usr or /etc is shown, and the
    /// init process runs with the host's loader and libraries from [`HOST_LIBS`].
    pub image: bool,
    /// The root's mount propagation: `rslave`, so that slot mounts made on the host
    /// after start reach the sandbox and nothing the sandbox mounts reaches the host
    /// (runc's default, not crun's); youki takes only the spec's non-recursive names.
    pub root_propagation: &'a str,
}

/// Where an image sandbox sees the host's libraries, for the init process only.
pub const HOST_LIBS: &str = "/var/rapid/lib";

/// The host's library directory and dynamic loader of this architecture.
fn host_loader() -> (PathBuf, &'static str) {
    let (triple, loader) = match std::env::consts::ARCH {
        "aarch64" => ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
        _ => ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    };
    (Path::new("/usr/lib").join(triple), loader)
}

/// How the init process is started: directly on the host's root, through the host's
/// loader in an image (whose own libc may differ or be missing).
fn init_args(image: bool) -> Vec<String> {
    let init = [INIT_PATH.to_owned(), "sandbox-init".to_owned()];
    if !image {
        return init.to_vec();
    }
    let (_, loader) = host_loader();
    [
        format!("{HOST_LIBS}/{loader}"),
        "--library-path".to_owned(),
        HOST_LIBS.to_owned(),
    ]
    .into_iter()
    .chain(init)
    .collect()
}

fn bind(source: &Path, target: &Path, extra: &[&str]) -> Result<Mount, OciSpecError> {
    let mut options: Vec<String> = ["rbind", "ro", "nosuid", "nodev"]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect();
    options.dedup();
    MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
}

/// The directories of a merged-/usr Debian root, as links into `/usr`.
pub fn prepare_rootfs(rootfs: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(rootfs)?;
    for dir in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(dir);
        if let Ok(link) = std::fs::read_link(&host) {
            std::os::unix::fs::symlink(link, rootfs.join(dir))?;
        }
    }
    Ok(())
}

pub fn config(spec: &BundleSpec) -> Result<Spec, OciSpecError> {
    let mut mounts: Vec<Mount> = get_default_mounts();
    if spec.image {
        // The image brings its own /usr, /etc, code and layers; name resolution
        // comes from the host.
        mounts.push(bind(&host_loader().0, Path::new(HOST_LIBS), &[])?);
        for file in ["hosts", "resolv.conf"] {
            let source = spec.etc.join(file);
            if source.exists() {
                mounts.push(bind(&source, &Path::new("/etc").join(file), &[])?);
            }
        }
    } else {
        mounts.push(bind(Path::new("/usr"), Path::new("/usr"), &[])?);
        mounts.push(bind(spec.etc, Path::new("/etc"), &[])?);
        for dir in ["ssl", "ca-certificates", "alternatives"] {
            let host = Path::new("/etc").join(dir);
            if host.is_dir() {
                mounts.push(bind(&host, &host, &[])?);
            }
        }
    }
    for mount in spec.mounts {
        mounts.push(bind(&mount.source, &mount.target, &[])?);
    }
    mounts.push(bind(spec.init, Path::new(INIT_PATH), &[])?);
    if !spec.image {
        mounts.push(bind(spec.task_slot, Path::new("/var/task"), &["rslave"])?);
        mounts.push(bind(spec.opt_slot, Path::new("/opt"), &["rslave"])?);
    }
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".to_owned(),
                "nodev".to_owned(),
                "mode=1777".to_owned(),
                format!("size={}m", spec.tmp_mb),
            ])
            .build()?,
    );
    let no_caps = LinuxCapabilitiesBuilder::default()
        .bounding(HashSet::new())
        .effective(HashSet::new())
        .inheritable(HashSet::new())
        .permitted(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(SANDBOX_UID)
                .gid(SANDBOX_GID)
                .build()?,
        )
        .args(init_args(spec.image))
        .env(vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_owned()])
        .cwd("/")
        .capabilities(no_caps)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(NOFILE)
                .soft(NOFILE)
                .build()?,
        ])
        .build()?;
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ])
        .build()?;
    // Namespaces keep oci-spec's defaults: new pid, network, ipc, uts, mount and
    // cgroup namespaces.
    let mut linux = LinuxBuilder::default()
        .resources(resources)
        .cgroups_path(PathBuf::from(spec.cgroup))
        .rootfs_propagation(spec.root_propagation)
        .namespaces(oci_spec::runtime::get_default_namespaces())
        .build()?;
    confine(&mut process, &mut linux, Workload::Sandbox)?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(spec.rootfs)
                .readonly(true)
                .build()?,
        )
        .hostname("sandbox")
        .mounts(mounts)
        .process(process)
        .linux(linux)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_isolate_by_default() {
        let spec = config(&BundleSpec {
            rootfs: Path::new("/b/rootfs"),
            init: Path::new("/usr/bin/nimbus"),
            etc: Path::new("/b/etc"),
            mounts: &[ReadOnly {
                source: "/host/runtime".into(),
                target: "/var/runtime".into(),
            }],
            task_slot: Path::new("/s/task"),
            opt_slot: Path::new("/s/opt"),
            tmp_mb: 512,
            cgroup: "/nimbus-test/sb1",
            image: false,
            root_propagation: "rslave",
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["user"]["uid"], SANDBOX_UID);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(
            json["process"]["capabilities"]["bounding"],
            serde_json::json!([])
        );
        let namespaces: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ns| ns["type"].as_str().unwrap())
            .collect();
        for wanted in ["pid", "mount", "ipc", "uts", "network"] {
            assert!(namespaces.contains(&wanted), "{wanted} namespace missing");
        }
        let mounts = json["mounts"].as_array().unwrap();
        let tmp = mounts.iter().find(|m| m["destination"] == "/tmp").unwrap();
        assert!(
            tmp["options"]
                .as_array()
                .unwrap()
                .contains(&"size=512m".into())
        );
        let runtime = mounts
            .iter()
            .find(|m| m["destination"] == "/var/runtime")
            .unwrap();
        assert!(
            runtime["options"]
                .as_array()
                .unwrap()
                .contains(&"ro".into())
        );
        assert_eq!(
            json["linux"]["resources"]["pids"]["limit"],
            Workload::Sandbox.pids_max()
        );
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(
            json["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&"/proc/kcore".into())
        );
    }

    #[test]
    fn image_bundles_show_nothing_of_the_host_but_the_init_and_its_libraries() {
        let spec = config(&BundleSpec {
            rootfs: Path::new("/b/rootfs"),
            init: Path::new("/usr/bin/nimbus"),
            etc: Path::new("/nonexistent/etc"),
            mounts: &[],
            task_slot: Path::new("/s/task"),
            opt_slot: Path::new("/s/opt"),
            tmp_mb: 512,
            cgroup: "/nimbus-test/sb2",
            image: true,
            root_propagation: "rslave",
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"]["readonly"], true);
        let targets: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for hidden in ["/usr", "/etc", "/var/task", "/opt"] {
            assert!(!targets.contains(&hidden), "{hidden} is the image's own");
        }
        assert!(targets.contains(&HOST_LIBS) && targets.contains(&INIT_PATH));
        let args = json["process"]["args"].as_array().unwrap();
        assert!(args[0].as_str().unwrap().starts_with(HOST_LIBS));
        assert_eq!(args[3], INIT_PATH);
    }
}
