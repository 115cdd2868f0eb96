//! A small qemu VM running Debian's own PPTP client (pptp-linux + pppd), since this host kernel
//! has no PPP. The image is assembled from Debian packages without debootstrap: download the
//! dependency closure, unpack the .debs into a merged-/usr tree, copy only the kernel modules the
//! jobs need, add an /init, pack a newc cpio. Jobs go in and results come out through a 9p share,
//! so changing a job never rebuilds the image. See ../shared/interop-vm.md for the facts behind it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// What the VM carries. pptpd is there so captures can be taken of the real client against the
/// reference server inside the VM.
const PACKAGES: &[&str] = &[
    "ppp",
    "pptp-linux",
    "pptpd",
    "iproute2",
    "iputils-ping",
    "iperf3",
    "kmod",
    "dash",
    "busybox-static",
    "tcpdump",
    // WIDE dhcp6c: the IPv6 pass's DHCPv6 prefix-delegation client (the usual one on PPPoE
    // CPEs; ISC dhclient refuses PPP interfaces outright: "Unsupported device type 512").
    "wide-dhcpv6-client",
    "linux-image-amd64",
];
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "9pnet_virtio",
    "9p",
    "ppp_generic",
    "ppp_async",
    "ppp_mppe",
    "pptp",
    "veth",
];
/// Bump when the image recipe changes, so caches rebuild.
const RECIPE_VERSION: u32 = 1;

pub struct Image {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("spawn {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const INIT: &str = r#"#!/bin/sh
B=/bin/busybox
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
$B mkdir -p /dev/pts /run /tmp /mnt/share /var/run /var/log
$B mount -t devpts devpts /dev/pts
$B mount -t tmpfs tmpfs /run
$B mount -t tmpfs tmpfs /tmp
for m in MODULES; do modprobe $m || echo "modprobe $m failed"; done
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /mnt/share
ip link set lo up
sh /mnt/share/job.sh > /mnt/share/job.log 2>&1
echo $? > /mnt/share/job.rc
$B sync
$B poweroff -f
"#;

/// Builds (or reuses) the image under `cache`.
pub fn build_image(cache: &Path) -> anyhow::Result<Image> {
    let stamp_path = cache.join("stamp");
    let stamp = format!("{RECIPE_VERSION} {PACKAGES:?} {MODULES:?}");
    let image = Image {
        kernel: cache.join("vmlinuz"),
        initrd: cache.join("initrd.img"),
    };
    if std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
        && image.kernel.exists()
        && image.initrd.exists()
    {
        return Ok(image);
    }
    let started = Instant::now();
    let debs = cache.join("debs");
    let root = cache.join("root");
    let kpkg = cache.join("kernel");
    for d in [&root, &kpkg] {
        let _ = std::fs::remove_dir_all(d);
    }
    std::fs::create_dir_all(debs.join("partial"))?;
    // The whole dependency closure: with an empty dpkg status, apt thinks nothing is installed.
    run(Command::new("apt-get")
        .args(["-y", "-q", "--download-only", "--no-install-recommends"])
        .arg(format!("-oDir::Cache::archives={}", debs.display()))
        .args([
            "-oDir::State::status=/dev/null",
            "-oDebug::NoLocking=1",
            "install",
        ])
        .args(PACKAGES)
        .stdout(Stdio::null()))?;

    // Merged /usr, as Debian 12 has it.
    for d in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link))?;
    }
    let mut kernel_deb = None;
    for entry in std::fs::read_dir(&debs)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".deb") {
            continue;
        }
        if name.starts_with("linux-image-6") {
            kernel_deb = Some(path);
            continue;
        }
        unpack_deb(&path, &root)?;
    }
    let kernel_deb = kernel_deb.context("no linux-image deb downloaded")?;
    std::fs::create_dir_all(&kpkg)?;
    unpack_deb(&kernel_deb, &kpkg)?;
    let kver = std::fs::read_dir(kpkg.join("lib/modules"))?
        .next()
        .context("kernel package has no modules")??
        .file_name()
        .to_string_lossy()
        .into_owned();
    std::fs::copy(kpkg.join(format!("boot/vmlinuz-{kver}")), &image.kernel)?;

    // Only the modules the jobs need, with their dependencies.
    run(Command::new("depmod").arg("-b").arg(&kpkg).arg(&kver))?;
    let mut wanted = Vec::new();
    for m in MODULES {
        let deps = output(Command::new("modprobe").arg("-d").arg(&kpkg).args([
            "-S",
            &kver,
            "--show-depends",
            m,
        ]))?;
        for line in deps.lines() {
            if let Some(path) = line.strip_prefix("insmod ") {
                wanted.push(PathBuf::from(
                    path.split_whitespace().next().unwrap_or(path),
                ));
            }
        }
    }
    for ko in wanted {
        let rel = ko
            .strip_prefix(&kpkg)
            .with_context(|| format!("{} outside the kernel tree", ko.display()))?;
        let dest = root.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap_or(&root))?;
        std::fs::copy(&ko, &dest)?;
    }
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let src = kpkg.join(format!("lib/modules/{kver}/{f}"));
        if src.exists() {
            std::fs::copy(&src, root.join(format!("lib/modules/{kver}/{f}")))?;
        }
    }
    run(Command::new("depmod").arg("-b").arg(&root).arg(&kver))?;

    // dpkg would have made these in maintainer scripts.
    let _ = std::fs::remove_file(root.join("usr/bin/sh"));
    std::os::unix::fs::symlink("dash", root.join("usr/bin/sh"))?;
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n")?;
    let init = root.join("init");
    std::fs::write(&init, INIT.replace("MODULES", &MODULES.join(" ")))?;
    run(Command::new("chmod").arg("755").arg(&init))?;
    for d in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "usr/share/info",
    ] {
        let _ = std::fs::remove_dir_all(root.join(d));
    }

    let cpio = Command::new("sh")
        .current_dir(&root)
        .arg("-c")
        .arg(format!(
            "find . | cpio --quiet -o -H newc > {}",
            image.initrd.display()
        ))
        .status()?;
    if !cpio.success() {
        bail!("cpio failed");
    }
    std::fs::write(&stamp_path, stamp)?;
    println!(
        "VM image built in {:.0} s (kernel {kver})",
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

fn unpack_deb(deb: &Path, into: &Path) -> anyhow::Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"dpkg-deb --fsys-tarfile "$1" | tar -x --keep-directory-symlink -C "$2""#)
        .arg("sh")
        .arg(deb)
        .arg(into)
        .status()?;
    if !status.success() {
        bail!("unpack {}", deb.display());
    }
    Ok(())
}

/// Boots the VM, runs `share/job.sh` in it, and returns the job's exit code. With `tap`, the VM
/// gets a virtio NIC on that tap device; `netns` names the namespace qemu runs in (the tap's).
pub fn run_job(
    image: &Image,
    share: &Path,
    netns: Option<&str>,
    tap: Option<&str>,
    limit: Duration,
) -> anyhow::Result<i32> {
    let _ = std::fs::remove_file(share.join("job.rc"));
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
            c
        }
        None => Command::new("qemu-system-x86_64"),
    };
    cmd.args([
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-machine",
        "pc",
        "-m",
        "512",
        "-smp",
        "1",
    ])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(&image.kernel)
    .arg("-initrd")
    .arg(&image.initrd)
    .args([
        "-append",
        "console=ttyS0 panic=-1 quiet mitigations=off tsc=reliable 8250.nr_uarts=1",
    ])
    .arg("-virtfs")
    .arg(format!(
        "local,path={},mount_tag=share,security_model=none,id=share",
        share.display()
    ))
    .arg("-serial")
    .arg(format!("file:{}", share.join("console.log").display()))
    .args(["-monitor", "none"]);
    if let Some(tap) = tap {
        cmd.args([
            "-netdev",
            &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
        ])
        .args(["-device", "virtio-net-pci,netdev=n0,romfile="]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("spawn qemu")?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("qemu exited with {status}");
            }
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "VM job did not finish within {} s (console: {})",
                limit.as_secs(),
                share.join("console.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rc = std::fs::read_to_string(share.join("job.rc")).with_context(|| {
        format!(
            "job left no exit code (console: {})",
            share.join("console.log").display()
        )
    })?;
    Ok(rc.trim().parse().unwrap_or(-1))
}
