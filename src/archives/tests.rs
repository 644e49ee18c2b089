use std::collections::HashMap;
use std::io::{Cursor, Seek, SeekFrom};

use super::gunzip::discard;
use super::skip::config_id;
use super::tar::{Header, number, octal, parse_header, pax_records, seek_past};
use super::*;
use crate::telemetry::gzip::{crc32, gzip};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A ustar header, checksum included.
fn header(name: &str, size: u64, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = kind;
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar archive of `(name, kind, contents)` entries.
fn tar(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data) in entries {
        out.extend_from_slice(&header(name, data.len() as u64, *kind));
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn manifest() -> String {
    format!(
        r#"[{{"Config":"{A}.json","RepoTags":["oz-test/a:1","oz-test/a:latest"],"Layers":["l1/layer.tar"]}}]"#
    )
}

/// A cursor that counts the bytes read from it.
struct Counting {
    inner: Cursor<Vec<u8>>,
    read: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl Seek for Counting {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

fn docker_save_tar() -> Vec<u8> {
    let layer = vec![7u8; 1_000_000];
    tar(&[
        ("l1/", b'5', b""),
        ("l1/layer.tar", b'0', &layer),
        (&format!("{A}.json"), b'0', b"{}"),
        ("manifest.json", b'0', manifest().as_bytes()),
        ("repositories", b'0', b"{}"),
    ])
}

#[test]
fn the_manifest_is_found_by_seeking_past_the_layers() {
    let archive = docker_save_tar();
    let mut r = Counting {
        inner: Cursor::new(archive),
        read: 0,
    };
    let found = find_manifest(&mut r, seek_past).unwrap().unwrap();
    assert_eq!(found, manifest().as_bytes());
    // Four headers and the manifest: the megabyte of layer is never read.
    assert_eq!(r.read, 4 * 512 + manifest().len() as u64);
}

#[test]
fn the_manifest_is_found_in_a_gzip_stream() {
    let archive = docker_save_tar();
    let mut ours = Gunzip::new(Cursor::new(gzip(&archive)));
    assert_eq!(
        find_manifest(&mut ours, discard).unwrap().unwrap(),
        manifest().as_bytes()
    );
    // Dynamic Huffman blocks from another encoder, with a file name in the header.
    let deflated = miniz_oxide::deflate::compress_to_vec(&archive, 6);
    let mut gz = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3];
    gz.extend_from_slice(b"image.tar\0");
    gz.extend_from_slice(&deflated);
    gz.extend_from_slice(&crc32(&archive).to_le_bytes());
    gz.extend_from_slice(&(archive.len() as u32).to_le_bytes());
    let mut theirs = Gunzip::new(Cursor::new(gz));
    assert_eq!(
        find_manifest(&mut theirs, discard).unwrap().unwrap(),
        manifest().as_bytes()
    );
}

#[test]
fn gzip_members_are_read_in_turn_and_damage_is_an_error() {
    let mut two = gzip(b"first member, ");
    two.extend_from_slice(&gzip(b"second member"));
    two.extend_from_slice(&[0u8; 16]); // padding after the last member is ignored
    let mut out = String::new();
    Gunzip::new(Cursor::new(two))
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "first member, second member");

    let whole = gzip(&vec![b'x'; 100_000]);
    let cut = &whole[..whole.len() / 2];
    let err = Gunzip::new(Cursor::new(cut))
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

    let mut bad = whole[..10].to_vec();
    bad.extend_from_slice(&[0xff; 64]); // a reserved block type
    let err = Gunzip::new(Cursor::new(bad))
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(err.to_string(), "corrupt gzip data");

    let err = Gunzip::new(Cursor::new(b"plain text".to_vec()))
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(err.to_string(), "not gzip data");
}

#[test]
fn archives_without_a_manifest_or_not_tar_at_all() {
    let no_manifest = tar(&[("repositories", b'0', b"{}")]);
    assert_eq!(
        find_manifest(&mut Cursor::new(no_manifest), seek_past).unwrap(),
        None
    );
    // A manifest that is a directory is not the manifest.
    let dir = tar(&[("manifest.json", b'5', b"")]);
    assert_eq!(
        find_manifest(&mut Cursor::new(dir), seek_past).unwrap(),
        None
    );
    assert_eq!(
        find_manifest(&mut Cursor::new(Vec::new()), seek_past).unwrap(),
        None
    );
    let garbage = vec![b'g'; 2048];
    let err = find_manifest(&mut Cursor::new(garbage), seek_past).unwrap_err();
    assert_eq!(err.to_string(), "not a tar archive (bad header)");
    let mut cut = tar(&[("manifest.json", b'0', manifest().as_bytes())]);
    cut.truncate(600);
    let err = find_manifest(&mut Cursor::new(cut), seek_past).unwrap_err();
    assert!(matches!(err, ManifestError::Io(ref e) if e.kind() == io::ErrorKind::UnexpectedEof));
}

#[test]
fn pax_and_gnu_records_name_and_size_the_next_entry() {
    // A PAX record says the next entry (whose header says 0 bytes) has 600
    // bytes and is the manifest; a GNU long name before it is overridden.
    let pax = b"12 size=600\n22 path=manifest.json\n";
    let mut archive = tar(&[
        ("././@LongLink", b'L', b"some/very/long/name\0"),
        ("PaxHeaders/x", b'x', pax),
    ]);
    archive.truncate(archive.len() - 1024);
    archive.extend_from_slice(&header("short", 0, b'0'));
    archive.extend_from_slice(&[b'm'; 600]);
    archive.resize(archive.len().next_multiple_of(512) + 1024, 0);
    assert_eq!(
        find_manifest(&mut Cursor::new(archive), seek_past)
            .unwrap()
            .unwrap(),
        vec![b'm'; 600]
    );
    assert_eq!(pax_records(b"garbage"), (None, None));
    assert_eq!(
        pax_records(b"15 path=a/b/cd\n99 size=1\n"),
        (Some(b"a/b/cd".to_vec()), None)
    );
}

#[test]
fn tar_numbers() {
    assert_eq!(octal(b"00001750\0"), Some(1000));
    assert_eq!(octal(b"   1750 \0"), Some(1000));
    assert_eq!(octal(b"\0\0\0"), None);
    assert_eq!(octal(b"0009"), None);
    // GNU base-256: 10 GiB.
    let mut field = [0u8; 12];
    field[0] = 0x80;
    field[7..].copy_from_slice(&[0x02, 0x80, 0x00, 0x00, 0x00]);
    assert_eq!(number(&field), Some(10 * 1024 * 1024 * 1024));
    field[0] = 0xff;
    assert_eq!(number(&field), None);
    let mut h = header("a", 5, b'0');
    assert_eq!(
        parse_header(&h).unwrap(),
        Header {
            name: b"a".to_vec(),
            size: 5,
            kind: b'0'
        }
    );
    h[345..348].copy_from_slice(b"dir");
    assert!(matches!(parse_header(&h), Err(ManifestError::NotTar)));
}

#[test]
fn manifests_of_both_save_formats() {
    let legacy = parse_manifest(manifest().as_bytes()).unwrap();
    assert_eq!(
        legacy,
        vec![SavedImage {
            id: format!("sha256:{A}"),
            tags: vec!["oz-test/a:1".into(), "oz-test/a:latest".into()],
        }]
    );
    let oci = format!(
        r#"[{{"Config":"blobs/sha256/{B}","RepoTags":null,"Layers":[],"LayerSources":{{}}}},
            {{"Config":"blobs/sha256/{A}"}}]"#
    );
    assert_eq!(
        parse_manifest(oci.as_bytes()).unwrap(),
        vec![
            SavedImage {
                id: format!("sha256:{B}"),
                tags: vec![]
            },
            SavedImage {
                id: format!("sha256:{A}"),
                tags: vec![]
            },
        ]
    );
    assert_eq!(
        parse_manifest(br#"[{"Config":"../etc/passwd"}]"#)
            .unwrap_err()
            .to_string(),
        r#"manifest.json names the config "../etc/passwd", not a sha256 blob"#
    );
    assert_eq!(
        parse_manifest(b"[]").unwrap_err().to_string(),
        "manifest.json lists no image"
    );
    assert!(matches!(
        parse_manifest(b"{\"Config\":1}"),
        Err(ManifestError::Json(_))
    ));
    assert_eq!(config_id(&format!("{}.json", A.to_uppercase())), None);
    assert_eq!(
        config_id(&format!("./{A}.json")),
        Some(format!("sha256:{A}"))
    );
}

#[test]
fn an_archive_is_skipped_only_when_every_id_and_tag_matches() {
    let a = format!("sha256:{A}");
    let b = format!("sha256:{B}");
    let images = vec![
        SavedImage {
            id: a.clone(),
            tags: vec!["x:1".into(), "x:latest".into()],
        },
        SavedImage {
            id: b.clone(),
            tags: vec![],
        },
    ];
    let daemon = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let all = daemon(&[(&a, &a), (&b, &b), ("x:1", &a), ("x:latest", &a)]);
    let check = |d: &HashMap<String, String>, images: &[SavedImage]| {
        is_loaded(images, &mut |n: &str| d.get(n).cloned())
    };
    assert!(check(&all, &images));
    // A tag moved to another image: load, so the tag comes back.
    let moved = daemon(&[(&a, &a), (&b, &b), ("x:1", &a), ("x:latest", &b)]);
    assert!(!check(&moved, &images));
    // A tag missing, an image missing.
    assert!(!check(&daemon(&[(&a, &a), (&b, &b), ("x:1", &a)]), &images));
    assert!(!check(
        &daemon(&[(&a, &a), ("x:1", &a), ("x:latest", &a)]),
        &images
    ));
    // Nothing to compare is never "already loaded".
    assert!(!check(&all, &[]));
}

#[test]
fn archives_are_listed_by_name() {
    let dir = std::env::temp_dir().join(format!("oz-archives-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub.tar")).unwrap();
    for name in ["b.tar.gz", "a.tar", "c.tgz", "notes.txt", "d.tar.gz.part"] {
        std::fs::write(dir.join(name), b"").unwrap();
    }
    let names: Vec<String> = list_archives(&dir)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.tar", "b.tar.gz"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        list_archives(&dir).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn messages_name_the_file_escaped() {
    let e = ArchiveError::Open {
        file: PathBuf::from("/images/evil\nINFO forged.tar"),
        source: io::Error::from(io::ErrorKind::PermissionDenied),
    };
    assert_eq!(
        e.to_string(),
        "cannot read image archive /images/evil\\nINFO forged.tar: permission denied; not loaded"
    );
    let e = ArchiveError::Load {
        file: PathBuf::from("/images/a.tar.gz"),
        source: DockerError::LoadFailed {
            message: "unexpected EOF".into(),
        },
    };
    assert_eq!(
        e.to_string(),
        "image archive /images/a.tar.gz was not loaded: the Docker daemon could not load it: unexpected EOF"
    );
    let e = ArchiveError::Dir {
        dir: PathBuf::from("/images"),
        source: io::Error::from(io::ErrorKind::NotFound),
    };
    assert_eq!(
        e.to_string(),
        "cannot read the image archive directory /images: entity not found; starting without loading any"
    );
    let many: Vec<String> = (0..12).map(|i| format!("i:{i}")).collect();
    assert_eq!(
        names(&many),
        "i:0, i:1, i:2, i:3, i:4, i:5, i:6, i:7, i:8, i:9 and 2 more"
    );
    assert_eq!(names(&["a\u{1b}[2J".into()]), "a\\u{1b}[2J");
}
