//! Whether a local output folder disappears with the container it is in.
//!
//! The container image sets [`IN_CONTAINER`]. There, a folder on the
//! container's own root file system (no volume mounted at or above it) is
//! thrown away with the container, and a run writing to it says so.

use std::path::{Path, PathBuf};

/// Set (to anything but empty or `0`) by the container image.
pub const IN_CONTAINER: &str = "MATERIALIZER_IN_CONTAINER";

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The warning for a run writing to `folder`, when this process runs in the
/// container image and `folder` is on the container's root file system.
pub fn lost_output_warning(folder: &Path) -> Option<String> {
    if !is_set(std::env::var(IN_CONTAINER).ok().as_deref()) {
        return None;
    }
    let mountinfo = std::fs::read_to_string(MOUNTINFO).ok()?;
    lost_with_container(folder, &mountinfo).then(|| {
        format!(
            "the output folder {} is not a mounted volume: its files are lost with the \
             container; mount a volume there or write to s3://bucket/prefix",
            folder.display()
        )
    })
}

fn is_set(flag: Option<&str>) -> bool {
    flag.is_some_and(|value| !value.is_empty() && value != "0")
}

/// True when the mount holding `folder` (an absolute path) is `/`.
pub fn lost_with_container(folder: &Path, mountinfo: &str) -> bool {
    mount_point(folder, mountinfo).is_some_and(|point| point == Path::new("/"))
}

/// The deepest mount point in `mountinfo` (the text of `/proc/self/mountinfo`)
/// that holds `folder`.
pub fn mount_point(folder: &Path, mountinfo: &str) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|point| folder.starts_with(point))
        .max_by_key(|point| point.components().count())
}

/// Mount points escape space, tab, newline and backslash as `\ooo` (octal).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a container started with `-v /srv/out:/data` sees.
    const WITH_VOLUME: &str = "\
1211 1001 0:112 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/containers/l/A
1212 1211 0:115 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1213 1211 0:116 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
1220 1211 254:0 /srv/out /data rw,relatime - ext4 /dev/vda rw
1221 1211 254:0 /srv/my\\040files /mnt/my\\040files rw,relatime - ext4 /dev/vda rw
1222 1211 254:0 /var/lib/containers/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw
";

    #[test]
    fn a_folder_under_a_volume_is_kept() {
        assert!(!lost_with_container(Path::new("/data"), WITH_VOLUME));
        assert!(!lost_with_container(
            Path::new("/data/topic/main"),
            WITH_VOLUME
        ));
        assert_eq!(
            mount_point(Path::new("/data/topic"), WITH_VOLUME),
            Some(PathBuf::from("/data"))
        );
    }

    #[test]
    fn a_folder_on_the_root_file_system_is_lost() {
        assert!(lost_with_container(Path::new("/app/out"), WITH_VOLUME));
        // A prefix of a name is not a parent folder.
        assert!(lost_with_container(Path::new("/database"), WITH_VOLUME));
        assert!(lost_with_container(Path::new("/etc/hosts.d"), WITH_VOLUME));
    }

    #[test]
    fn escaped_mount_points_are_read_back() {
        assert!(!lost_with_container(
            Path::new("/mnt/my files/out"),
            WITH_VOLUME
        ));
        assert!(lost_with_container(Path::new("/mnt/my"), WITH_VOLUME));
    }

    #[test]
    fn the_image_flag_is_set_by_any_value_but_empty_or_zero() {
        assert!(is_set(Some("1")));
        assert!(is_set(Some("yes")));
        assert!(!is_set(Some("0")));
        assert!(!is_set(Some("")));
        assert!(!is_set(None));
    }

    #[test]
    fn without_mount_information_nothing_is_claimed() {
        assert!(!lost_with_container(Path::new("/data"), ""));
        assert!(!lost_with_container(Path::new("/data"), "garbage\n"));
    }
}
