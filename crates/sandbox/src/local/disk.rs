//! A kernel-enforced disk quota per sandbox: the sandbox's writable state (overlay upper and
//! work dirs, the user's home) lives on an ext4 filesystem of its own, in a sparse image file
//! mounted through a loop device. A write past the quota fails with ENOSPC inside that
//! filesystem only; the host's filesystem, and with it the database, never fills up from a
//! sandbox.
//!
//! A blank image is made once per size with `mkfs.ext4` (there is no maintained Rust crate
//! that formats ext4) and each sandbox gets a sparse copy of it, which costs about a
//! millisecond; only the blocks the sandbox writes take space on the host.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{SeekFrom, seek};
use rustix::io::Errno;
use rustix::mount::MountFlags;

use crate::error::{Error, IoContext, Result};

/// Bytes per inode of sandbox filesystems: `node_modules` trees are many small files, so more
/// inodes than ext4's default of one per 16 KiB.
const BYTES_PER_INODE: &str = "8192";

/// The blank image of `bytes` bytes under `disks_dir`, formatted on first use.
pub fn blank_image(disks_dir: &Path, bytes: u64) -> Result<PathBuf> {
    // The name says how it was formatted: a blank image of other options is not reused.
    let path = disks_dir.join(format!("blank-ext4-v2-{bytes}.img"));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(disks_dir).ctx(|| format!("create {}", disks_dir.display()))?;
    // Formatted under a temporary name and renamed: concurrent creators (in this process or
    // another) each make their own, and a half-formatted image is never taken for a blank one.
    let tmp = disks_dir.join(format!(
        ".blank-ext4-v2-{bytes}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let file = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    file.set_len(bytes)
        .ctx(|| format!("size {} to {bytes} bytes", tmp.display()))?;
    drop(file);
    let mkfs = find_mkfs();
    // No blocks reserved for root or for growing the filesystem: a sandbox disk never grows,
    // and without the resize reserve a blank image holds 160 KiB of data, not 1.2 MiB.
    let args = [
        "-q",
        "-F",
        "-m",
        "0",
        "-i",
        BYTES_PER_INODE,
        "-O",
        "^resize_inode",
        "-E",
        "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
        "-L",
        "sandbox",
    ];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    args.push(tmp.as_os_str());
    if let Err(e) = super::tool::run(&mkfs, &args) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path).ctx(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    Ok(path)
}

fn find_mkfs() -> PathBuf {
    ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mkfs.ext4"))
}

/// Copies `from` to a new file `to`, keeping holes: only the formatted metadata blocks of a
/// blank image are written.
pub fn sparse_copy(from: &Path, to: &Path) -> Result<()> {
    let src = File::open(from).ctx(|| format!("open {}", from.display()))?;
    let dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .ctx(|| format!("create {}", to.display()))?;
    let len = src.metadata().ctx(|| format!("stat {}", from.display()))?.len();
    dst.set_len(len).ctx(|| format!("size {}", to.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos: u64 = 0;
    while pos < len {
        let data = match seek(&src, SeekFrom::Data(pos)) {
            Ok(data) => data,
            // ENXIO: no data after `pos`, the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(err) => return Err(Error::io(format!("seek data in {}", from.display()), err.into())),
        };
        let hole = seek(&src, SeekFrom::Hole(data)).unwrap_or(len);
        let mut at = data;
        while at < hole {
            let n = ((hole - at) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], at)
                .ctx(|| format!("read {}", from.display()))?;
            dst.write_all_at(&buf[..n], at)
                .ctx(|| format!("write {}", to.display()))?;
            at += n as u64;
        }
        pos = hole;
    }
    Ok(())
}

// From <linux/loop.h>.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Mounts the ext4 image at `target` (nosuid, nodev) through a fresh loop device. The device
/// is set to clear itself, so unmounting the filesystem also frees the device.
pub fn mount_image(image: &Path, target: &Path, never_mounted: bool) -> Result<()> {
    // A filesystem of this image that was detached lazily (its last processes were still
    // dying) lives on until they are gone, and writes its data back then: mounting the image
    // a second time meanwhile would show stale files, and two ext4 mounts of one image
    // corrupt it. Looking reads every loop device's backing file (hundreds on a busy host),
    // so an image never mounted before skips it.
    let deadline = std::time::Instant::now() + STILL_ATTACHED_WAIT;
    while !never_mounted && attached(image) {
        if std::time::Instant::now() >= deadline {
            return Err(Error::io(
                format!("mount the sandbox disk {}", image.display()),
                io::Error::other(format!(
                    "it is still in use from its previous start after {STILL_ATTACHED_WAIT:?}; try again"
                )),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .ctx(|| format!("open disk image {}", image.display()))?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .ctx(|| "open /dev/loop-control (the kernel's loop device support is needed for disk quotas)".into())?;
    // GET_FREE answers the same device to everyone until one configures it: within this
    // process one attach at a time; another process may still take it first, then try again.
    static ATTACH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let attach = ATTACH.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        // SAFETY: ioctl without argument on a descriptor we own.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(Error::io("find a free loop device", io::Error::last_os_error()));
        }
        let dev_path = PathBuf::from(format!("/dev/loop{n}"));
        let device = match OpenOptions::new().read(true).write(true).open(&dev_path) {
            Ok(d) => d,
            // The device node may appear a moment after GET_FREE created the device.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("open {}", dev_path.display()), e)),
        };
        match configure(&device, &backing) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => {
                return Err(Error::io(
                    format!("attach {} to {}", image.display(), dev_path.display()),
                    e,
                ));
            }
        }
        drop(attach);
        let result = mount_ext4(&dev_path, target);
        // Closing the last descriptor of an auto-clearing device that is not mounted frees it.
        drop(device);
        return result;
    }
    Err(Error::io(
        format!("attach {} to a loop device", image.display()),
        io::Error::other("every free loop device was taken by others"),
    ))
}

/// How long a start waits for the previous filesystem of its disk image to go away.
const STILL_ATTACHED_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a loop device is attached to `image`. Matched on the image's last two path
/// components (`<sandbox id>/disk.img`): a loop device names its file by the path it has in
/// its mount, and once the sandboxes dir's own bind mount was detached (a clean stop) that is
/// a path relative to the detached mount, not the one we know.
fn attached(image: &Path) -> bool {
    let Ok(devices) = std::fs::read_dir("/sys/block") else {
        return false;
    };
    let mut tail = Vec::new();
    for part in [image.parent().and_then(Path::file_name), image.file_name()] {
        tail.push(b'/');
        tail.extend_from_slice(part.map_or(&[][..], |p| p.as_bytes()));
    }
    devices.flatten().any(|device| {
        device.file_name().as_bytes().starts_with(b"loop")
            && std::fs::read(device.path().join("loop/backing_file")).is_ok_and(|file| {
                let file = file.strip_suffix(b"\n").unwrap_or(&file);
                let file = file.strip_suffix(b" (deleted)").unwrap_or(file);
                file.ends_with(&tail)
            })
    })
}

fn configure(device: &File, backing: &File) -> io::Result<()> {
    let mut config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        // SAFETY: all-zero bytes are a valid value of this plain C struct.
        info: unsafe { std::mem::zeroed() },
        reserved: [0; 8],
    };
    // Buffered I/O: the image was just written through the page cache, and the sandbox's
    // ext4 keeps its own cache on top.
    config.info.flags = LO_FLAGS_AUTOCLEAR;
    // SAFETY: LOOP_CONFIGURE reads a `struct loop_config` that lives across the call.
    if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config as *const LoopConfig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mount_ext4(device: &Path, target: &Path) -> Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::io("mount path contains NUL", io::ErrorKind::InvalidInput.into()))
    };
    let (source, dest) = (c(device)?, c(target)?);
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME;
    if let Err(err) = rustix::mount::mount(source.as_c_str(), dest.as_c_str(), c"ext4", flags, c"errors=remount-ro") {
        return Err(Error::io(
            format!("mount the sandbox disk {} on {}", device.display(), target.display()),
            err.into(),
        ));
    }
    Ok(())
}

/// Free bytes for unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::io("path contains NUL", io::ErrorKind::InvalidInput.into()))?;
    let st =
        rustix::fs::statvfs(c.as_c_str()).map_err(|err| Error::io(format!("statvfs {}", dir.display()), err.into()))?;
    Ok(st.f_bavail * st.f_frsize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let file = File::create(&from).unwrap();
        file.set_len(64 << 20).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        file.write_all_at(b"middle", 32 << 20).unwrap();
        drop(file);
        let to = dir.path().join("to");
        sparse_copy(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        use std::os::unix::fs::MetadataExt;
        // 512-byte blocks actually allocated: far less than the 64 MiB length.
        assert!(std::fs::metadata(&to).unwrap().blocks() * 512 < 4 << 20);
    }
}
