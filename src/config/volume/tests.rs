//! Exact values for every volume form Docker's Linux parser accepts and
//! every one it refuses (cases taken from the grammar of moby's
//! `volume/mounts/linux_parser.go` and the local driver's name rule).

use super::*;

fn opts() -> MountOptions {
    MountOptions::default()
}

fn mount(spec: &str, source: VolumeSource, container: &str, options: MountOptions) -> VolumeMount {
    VolumeMount {
        spec: spec.into(),
        source,
        container: container.into(),
        options,
    }
}

fn host(p: &str) -> VolumeSource {
    VolumeSource::HostPath(p.into())
}

fn named(n: &str) -> VolumeSource {
    VolumeSource::Named(n.into())
}

#[test]
fn accepted_forms_with_exact_values() {
    use Access::*;
    let ro = MountOptions {
        access: Some(ReadOnly),
        ..opts()
    };
    let cases: Vec<(&str, VolumeMount)> = vec![
        (
            "/data:/data",
            mount("/data:/data", host("/data"), "/data", opts()),
        ),
        (
            "/opt/cache:/cache:ro",
            mount("/opt/cache:/cache:ro", host("/opt/cache"), "/cache", ro),
        ),
        (
            "/a:/b:rw",
            mount(
                "/a:/b:rw",
                host("/a"),
                "/b",
                MountOptions {
                    access: Some(ReadWrite),
                    ..opts()
                },
            ),
        ),
        (
            "/a:/b:z",
            mount(
                "/a:/b:z",
                host("/a"),
                "/b",
                MountOptions {
                    selinux: Some(SelinuxLabel::Shared),
                    ..opts()
                },
            ),
        ),
        (
            "/a:/b:Z",
            mount(
                "/a:/b:Z",
                host("/a"),
                "/b",
                MountOptions {
                    selinux: Some(SelinuxLabel::Private),
                    ..opts()
                },
            ),
        ),
        (
            "/a:/b:ro,z",
            mount(
                "/a:/b:ro,z",
                host("/a"),
                "/b",
                MountOptions {
                    access: Some(ReadOnly),
                    selinux: Some(SelinuxLabel::Shared),
                    ..opts()
                },
            ),
        ),
        (
            "/a:/b:rw,rprivate",
            mount(
                "/a:/b:rw,rprivate",
                host("/a"),
                "/b",
                MountOptions {
                    access: Some(ReadWrite),
                    propagation: Some(Propagation::RPrivate),
                    ..opts()
                },
            ),
        ),
        (
            "/a:/b:Z,rshared,delegated,ro",
            mount(
                "/a:/b:Z,rshared,delegated,ro",
                host("/a"),
                "/b",
                MountOptions {
                    access: Some(ReadOnly),
                    selinux: Some(SelinuxLabel::Private),
                    propagation: Some(Propagation::RShared),
                    consistency: Some(Consistency::Delegated),
                    ..opts()
                },
            ),
        ),
        (
            "/a:/b:cached",
            mount(
                "/a:/b:cached",
                host("/a"),
                "/b",
                MountOptions {
                    consistency: Some(Consistency::Cached),
                    ..opts()
                },
            ),
        ),
        (
            "/a:/b:consistent",
            mount(
                "/a:/b:consistent",
                host("/a"),
                "/b",
                MountOptions {
                    consistency: Some(Consistency::Consistent),
                    ..opts()
                },
            ),
        ),
        (
            "data:/data",
            mount("data:/data", named("data"), "/data", opts()),
        ),
        (
            "my-vol_1.x:/v:ro,nocopy",
            mount(
                "my-vol_1.x:/v:ro,nocopy",
                named("my-vol_1.x"),
                "/v",
                MountOptions {
                    access: Some(ReadOnly),
                    nocopy: true,
                    ..opts()
                },
            ),
        ),
        (
            "cache:/cache:nocopy,z",
            mount(
                "cache:/cache:nocopy,z",
                named("cache"),
                "/cache",
                MountOptions {
                    nocopy: true,
                    selinux: Some(SelinuxLabel::Shared),
                    ..opts()
                },
            ),
        ),
        (
            "/data",
            mount("/data", VolumeSource::Anonymous, "/data", opts()),
        ),
        // A trailing ':' is an empty option list, which Docker takes.
        ("/a:/b:", mount("/a:/b:", host("/a"), "/b", opts())),
        // Docker reads `\` as `/` when it checks the container path.
        ("/a:\\b", mount("/a:\\b", host("/a"), "\\b", opts())),
        (
            "/a:/b/../c",
            mount("/a:/b/../c", host("/a"), "/b/../c", opts()),
        ),
    ];
    for (entry, want) in cases {
        assert_eq!(parse_volume(entry), Ok(want), "{entry}");
        assert_eq!(parse_volume(entry).unwrap().to_bind(), entry);
    }
    for p in [
        "private", "rprivate", "shared", "rshared", "slave", "rslave",
    ] {
        let entry = format!("/a:/b:{p}");
        let got = parse_volume(&entry).unwrap();
        assert_eq!(got.options.propagation.map(Propagation::as_str), Some(p));
    }
}

#[test]
fn accessors() {
    let v = parse_volume("/opt/x:/x:ro,z").unwrap();
    assert!(v.read_only());
    assert_eq!(v.host_path(), Some("/opt/x"));
    let v = parse_volume("data:/data").unwrap();
    assert!(!v.read_only());
    assert_eq!(v.host_path(), None);
}

#[test]
fn refused_forms_name_the_bad_part() {
    use VolumeProblem::*;
    let cases: Vec<(&str, VolumeProblem)> = vec![
        ("", Empty),
        (":/data", EmptySource),
        ("::", EmptySource),
        ("/a:/b:ro:x", TooManyParts),
        ("/data:ro", OptionsWithoutContainerPath("ro".into())),
        ("data:z,rw", OptionsWithoutContainerPath("z,rw".into())),
        ("/data:", EmptyContainerPath),
        ("/data::ro", EmptyContainerPath),
        ("/data:data", RelativeContainerPath("data".into())),
        ("data", RelativeContainerPath("data".into())),
        ("/a:/", RootContainerPath),
        ("/a:/..", RootContainerPath),
        ("/a:/x/..//", RootContainerPath),
        ("/a:\\", RootContainerPath),
        ("/a:/b:ro,", EmptyOption),
        ("/a:/b:,ro", EmptyOption),
        ("/a:/b:rx", UnknownOption("rx".into())),
        ("/a:/b:RO", UnknownOption("RO".into())),
        ("/a:/b:ro z", UnknownOption("ro z".into())),
        ("/a:/b:ro,rw", ConflictingOptions("ro".into(), "rw".into())),
        ("/a:/b:z,Z", ConflictingOptions("z".into(), "Z".into())),
        (
            "/a:/b:shared,rslave",
            ConflictingOptions("shared".into(), "rslave".into()),
        ),
        (
            "v1:/b:nocopy,nocopy",
            ConflictingOptions("nocopy".into(), "nocopy".into()),
        ),
        (
            "/a:/b:cached,delegated",
            ConflictingOptions("cached".into(), "delegated".into()),
        ),
        ("/a:/b:nocopy", NoCopyOnHostPath),
        ("data:/b:rshared", PropagationOnVolume("rshared".into())),
        ("a:/b", VolumeNameTooShort("a".into())),
        ("./data:/data", BadVolumeName("./data".into())),
        ("~/data:/data", BadVolumeName("~/data".into())),
        ("_x:/data", BadVolumeName("_x".into())),
        ("my vol:/data", BadVolumeName("my vol".into())),
        ("\\srv\\x:/data", BadVolumeName("\\srv\\x".into())),
        ("C:\\x:/data", UnknownOption("/data".into())),
    ];
    for (entry, want) in cases {
        assert_eq!(parse_volume(entry), Err(want), "{entry}");
    }
}

#[test]
fn problem_messages_are_exact() {
    let msg = |e: &str| parse_volume(e).unwrap_err().to_string();
    let form = "(expected SOURCE:CONTAINER[:OPTIONS], or /CONTAINER for an anonymous volume)";
    assert_eq!(msg(""), format!("is empty {form}"));
    assert_eq!(
        msg(":/d"),
        format!("has nothing before the first ':' {form}")
    );
    assert_eq!(
        msg("/a:/b:c:d"),
        format!("has more than three ':'-separated parts {form}")
    );
    assert_eq!(
        msg("/data:ro"),
        format!("has options `ro` but no container path {form}")
    );
    assert_eq!(msg("/a::ro"), format!("has an empty container path {form}"));
    assert_eq!(msg("/a:b"), "has container path `b`, which is not absolute");
    assert_eq!(
        msg("/a:/"),
        "has container path `/`: nothing can be mounted over the container's root"
    );
    assert_eq!(msg("/a:/b:ro,"), "has an empty item in its option list");
    assert_eq!(
        msg("/a:/b:rx"),
        "has unknown option `rx` (Docker's are ro, rw, z, Z, private, rprivate, shared, \
         rshared, slave, rslave, nocopy, consistent, cached, delegated)"
    );
    assert_eq!(
        msg("/a:/b:ro,rw"),
        "has options `ro` and `rw`, which conflict (at most one of each kind)"
    );
    assert_eq!(
        msg("/a:/b:nocopy"),
        "has option `nocopy` on a host path (it applies to named and anonymous volumes only)"
    );
    assert_eq!(
        msg("v:/b:shared"),
        "has option `shared` on a volume (propagation applies to host paths only)"
    );
    assert_eq!(
        msg("a:/b"),
        "names volume `a`, but a volume name needs at least two characters; a host directory must be written as an absolute path"
    );
    assert_eq!(
        msg("./data:/data"),
        "names volume `./data`, but a volume name may hold only [a-zA-Z0-9][a-zA-Z0-9_.-]; a host directory must be written as an absolute path"
    );
}

#[test]
fn go_path_clean() {
    for (input, want) in [
        ("/", "/"),
        ("/a/", "/a"),
        ("//a//b/", "/a/b"),
        ("/a/./b/../c", "/a/c"),
        ("/../a", "/a"),
        ("a/../..", ".."),
        ("", "."),
        ("\\b", "\\b"),
    ] {
        assert_eq!(clean(input), want, "{input}");
    }
}

#[test]
fn conflicts_between_entries() {
    let vols = |list: &[&str]| -> Vec<VolumeMount> {
        list.iter().map(|e| parse_volume(e).unwrap()).collect()
    };
    assert_eq!(check_conflicts(&vols(&["/a:/x", "b1:/y", "/z"])), Ok(()));
    let err = check_conflicts(&vols(&["/a:/data", "/b:/c", "cache:/data/:ro"])).unwrap_err();
    assert_eq!(
        err,
        VolumeConflict::SameContainerPath {
            first: "/a:/data".into(),
            second: "cache:/data/:ro".into(),
            path: "/data".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "volumes `/a:/data` and `cache:/data/:ro` both mount at /data; Docker refuses two mounts at one container path"
    );
    let err = check_conflicts(&vols(&["/opt/agent:/agent/:ro"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume `/opt/agent:/agent/:ro` mounts at /agent, where every task's agent sidecar is mounted"
    );
    // Below the agent's path is a nested mount, which Docker takes.
    assert_eq!(check_conflicts(&vols(&["/opt/x:/agent/x"])), Ok(()));
}

#[test]
fn start_warnings_are_exact() {
    let vols: Vec<VolumeMount> = [
        "data:/data",
        "/srv/missing:/m",
        "/srv/here:/h",
        "/anon",
        "/unknown:/u",
    ]
    .iter()
    .map(|e| parse_volume(e).unwrap())
    .collect();
    let exists = |p: &str| match p {
        "/srv/here" => Some(true),
        "/srv/missing" => Some(false),
        _ => None,
    };
    let lines: Vec<String> = warnings(&vols, &exists)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "volume `data:/data`: `data` is not a host path but a named Docker volume, shared by every task this worker runs; write an absolute path to bind a host directory",
            "volume `/srv/missing:/m`: host path /srv/missing does not exist; Docker will create it as an empty directory owned by root",
        ]
    );
}
