//! Exact-value tests of reference parsing, mirrors and volume names.

use std::collections::BTreeMap;

use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// (registry, repository, tag-or-digest, familiar name, credential key)
fn parts(r: &str) -> (String, String, String, String, String) {
    let r = ImageRef::parse(r).unwrap();
    (
        r.registry().to_owned(),
        r.repository().to_owned(),
        r.tag_or_digest().to_owned(),
        r.familiar_name(),
        r.credential_key().to_owned(),
    )
}

fn t(a: &str, b: &str, c: &str, d: &str, e: &str) -> (String, String, String, String, String) {
    (a.into(), b.into(), c.into(), d.into(), e.into())
}

#[test]
fn docker_hub_names_are_normalised() {
    let hub = DOCKER_HUB_AUTH_KEY;
    assert_eq!(
        parts("ubuntu"),
        t("docker.io", "library/ubuntu", "latest", "ubuntu", hub)
    );
    assert_eq!(
        parts("ubuntu:22.04"),
        t("docker.io", "library/ubuntu", "22.04", "ubuntu", hub)
    );
    assert_eq!(
        parts("me/app"),
        t("docker.io", "me/app", "latest", "me/app", hub)
    );
    assert_eq!(
        parts("docker.io/ubuntu"),
        t("docker.io", "library/ubuntu", "latest", "ubuntu", hub)
    );
    assert_eq!(
        parts("index.docker.io/warpdotdev/warp-agent:1"),
        t(
            "docker.io",
            "warpdotdev/warp-agent",
            "1",
            "warpdotdev/warp-agent",
            hub
        )
    );
    assert_eq!(
        parts("docker.io/library/a/b"),
        t("docker.io", "library/a/b", "latest", "library/a/b", hub)
    );
    assert_eq!(
        ImageRef::parse("ubuntu").unwrap().to_string(),
        "docker.io/library/ubuntu:latest"
    );
    assert_eq!(
        ImageRef::parse("me/app").unwrap().name(),
        "docker.io/me/app"
    );
}

#[test]
fn registry_detection() {
    assert_eq!(
        parts("localhost:5000/app"),
        t(
            "localhost:5000",
            "app",
            "latest",
            "localhost:5000/app",
            "localhost:5000"
        )
    );
    assert_eq!(
        parts("localhost/app:v1"),
        t("localhost", "app", "v1", "localhost/app", "localhost")
    );
    assert_eq!(
        parts("ghcr.io/warpdotdev/x:1.2"),
        t(
            "ghcr.io",
            "warpdotdev/x",
            "1.2",
            "ghcr.io/warpdotdev/x",
            "ghcr.io"
        )
    );
    assert_eq!(
        parts("Registry.Example.com:443/a/b_c__d-e--f.g"),
        t(
            "Registry.Example.com:443",
            "a/b_c__d-e--f.g",
            "latest",
            "Registry.Example.com:443/a/b_c__d-e--f.g",
            "Registry.Example.com:443"
        )
    );
    assert_eq!(
        parts("[::1]:5000/app:2"),
        t("[::1]:5000", "app", "2", "[::1]:5000/app", "[::1]:5000")
    );
    // No '.', ':' or "localhost": a Docker Hub namespace, not a registry.
    assert_eq!(
        parts("myhost/app"),
        t(
            "docker.io",
            "myhost/app",
            "latest",
            "myhost/app",
            DOCKER_HUB_AUTH_KEY
        )
    );
    // A bare "name:port" is a name and a tag, as in the docker CLI.
    assert_eq!(
        parts("localhost:5000"),
        t(
            "docker.io",
            "library/localhost",
            "5000",
            "localhost",
            DOCKER_HUB_AUTH_KEY
        )
    );
}

#[test]
fn digest_wins_over_tag() {
    let digest = format!("sha256:{HEX}");
    let r = ImageRef::parse(&format!("ubuntu:22.04@{digest}")).unwrap();
    assert_eq!(r.tag_or_digest(), digest);
    assert!(r.is_digest());
    assert_eq!(r.to_string(), format!("docker.io/library/ubuntu@{digest}"));
    let r = ImageRef::parse(&format!("localhost:5000/app@{digest}")).unwrap();
    assert_eq!(r.name(), "localhost:5000/app");
    assert_eq!(r.tag_or_digest(), digest);
}

#[test]
fn invalid_references_are_typed_errors() {
    let fmt = |r: &str| ReferenceError::InvalidFormat {
        reference: r.into(),
    };
    assert_eq!(ImageRef::parse(""), Err(ReferenceError::Empty));
    for bad in [
        "a//b",
        "-a",
        "a-",
        "/a",
        "a/",
        "a..b",
        "a___b",
        "ex ample",
        "loc.al/a b",
    ] {
        assert_eq!(ImageRef::parse(bad), Err(fmt(bad)), "{bad}");
    }
    for upper in ["Ubuntu", "me/App:1"] {
        assert_eq!(
            ImageRef::parse(upper),
            Err(ReferenceError::Uppercase {
                reference: upper.into()
            })
        );
    }
    let long_tag = format!("a:{}", "t".repeat(129));
    for bad in ["ubuntu:", "ubuntu:-x", "ubuntu:a+b", long_tag.as_str()] {
        assert_eq!(
            ImageRef::parse(bad),
            Err(ReferenceError::InvalidTag {
                reference: bad.into()
            }),
            "{bad}"
        );
    }
    assert!(ImageRef::parse(&format!("a:{}", "t".repeat(128))).is_ok());
    let upper_hex = format!("a@sha256:{}", HEX.to_uppercase());
    for bad in ["a@sha256:abc", "a@md5:00", "a@", upper_hex.as_str()] {
        assert_eq!(
            ImageRef::parse(bad),
            Err(ReferenceError::InvalidDigest {
                reference: bad.into()
            }),
            "{bad}"
        );
    }
    let long = format!("a/{}", "b".repeat(254));
    assert_eq!(
        ImageRef::parse(&long),
        Err(ReferenceError::NameTooLong {
            reference: long.clone()
        })
    );
    // Found by fuzzing: the limit is on the normalised name, which the
    // Display shows (`docker.io/library/` is 18 bytes).
    let fits = "b".repeat(237);
    assert_eq!(
        ImageRef::parse(&fits).unwrap().to_string(),
        format!("docker.io/library/{fits}:latest")
    );
    let over = "b".repeat(238);
    assert_eq!(
        ImageRef::parse(&over),
        Err(ReferenceError::NameTooLong {
            reference: over.clone()
        })
    );
    assert_eq!(
        ImageRef::parse("Ubuntu").unwrap_err().to_string(),
        "invalid image reference \"Ubuntu\": repository name must be lowercase"
    );
    assert_eq!(
        ImageRef::parse("a//b").unwrap_err().to_string(),
        "invalid image reference \"a//b\": invalid reference format"
    );
}

fn mirrors(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mirrored(image: &str, m: &BTreeMap<String, String>) -> String {
    ImageRef::parse(image)
        .unwrap()
        .with_mirrors(m)
        .unwrap()
        .to_string()
}

#[test]
fn mirror_rewrites_use_longest_component_prefix() {
    let m = mirrors(&[
        ("docker.io", "registry.internal:5000/dockerhub"),
        ("docker.io/warpdotdev", "agents.internal/warp"),
        ("ghcr.io/org", "mirror.local"),
    ]);
    assert_eq!(
        mirrored("ubuntu:22.04", &m),
        "registry.internal:5000/dockerhub/library/ubuntu:22.04"
    );
    assert_eq!(
        mirrored("me/app", &m),
        "registry.internal:5000/dockerhub/me/app:latest"
    );
    assert_eq!(
        mirrored("warpdotdev/warp-agent:1", &m),
        "agents.internal/warp/warp-agent:1"
    );
    assert_eq!(mirrored("ghcr.io/org/x/y:2", &m), "mirror.local/x/y:2");
    // "ghcr.io/org" must not match "ghcr.io/organisation".
    assert_eq!(
        mirrored("ghcr.io/organisation/x", &m),
        "ghcr.io/organisation/x:latest"
    );
    assert_eq!(mirrored("quay.io/a/b", &m), "quay.io/a/b:latest");
    let digest = format!("sha256:{HEX}");
    assert_eq!(
        mirrored(&format!("ubuntu@{digest}"), &m),
        format!("registry.internal:5000/dockerhub/library/ubuntu@{digest}")
    );
    let r = ImageRef::parse("ubuntu:22.04")
        .unwrap()
        .with_mirrors(&m)
        .unwrap();
    assert_eq!(r.credential_key(), "registry.internal:5000");
    assert_eq!(
        r.familiar_name(),
        "registry.internal:5000/dockerhub/library/ubuntu"
    );
}

#[test]
fn mirror_keys_are_normalised() {
    let m = mirrors(&[("https://index.docker.io/", "mirror.local")]);
    assert_eq!(mirrored("ubuntu", &m), "mirror.local/library/ubuntu:latest");
    // A mirror back onto Docker Hub keeps the official-image rule.
    let m = mirrors(&[("ghcr.io/x", "docker.io")]);
    assert_eq!(
        mirrored("ghcr.io/x/app", &m),
        "docker.io/library/app:latest"
    );
}

#[test]
fn bad_mirror_entries_are_errors() {
    let m = mirrors(&[("docker.io", "Not A Host")]);
    assert_eq!(
        check_mirrors(&m),
        Err(ReferenceError::InvalidMirror {
            prefix: "docker.io".into(),
            replacement: "Not A Host".into(),
            problem: "each side must start with a registry host[:port]"
        })
    );
    assert!(ImageRef::parse("ubuntu").unwrap().with_mirrors(&m).is_err());
    let m = mirrors(&[("docker.io/library/ubuntu", "mirror.local")]);
    assert_eq!(
        ImageRef::parse("ubuntu")
            .unwrap()
            .with_mirrors(&m)
            .unwrap_err()
            .to_string(),
        "invalid registry_mirrors entry \"docker.io/library/ubuntu: mirror.local\": the rewrite leaves no repository path"
    );
    // Found by fuzzing: a bare name would be pulled from Docker Hub.
    let m = mirrors(&[("docker.io", "doc/index.dock")]);
    assert_eq!(
        check_mirrors(&m).unwrap_err().to_string(),
        "invalid registry_mirrors entry \"docker.io: doc/index.dock\": the registry host \
         must contain a `.` or a `:port`, or be localhost; a bare name is a Docker Hub path"
    );
    assert!(ImageRef::parse("ubuntu").unwrap().with_mirrors(&m).is_err());
    assert_eq!(
        check_mirrors(&mirrors(&[("localhost", "mirror:5000")])),
        Ok(())
    );
    let m = mirrors(&[("docker.io", "mirror.local/UP")]);
    assert!(check_mirrors(&m).is_err());
    assert_eq!(
        check_mirrors(&mirrors(&[(
            "docker.io",
            "registry.internal:5000/dockerhub"
        )])),
        Ok(())
    );
}

#[test]
fn sidecar_volume_names() {
    let repo_digest = format!("warpdotdev/warp-agent@sha256:{HEX}");
    assert_eq!(
        sidecar_volume_name(
            "docker.io/warpdotdev/warp-agent:1",
            &[repo_digest],
            "sha256:ffff"
        ),
        Some("warpdotdev-warp-agent-0123456789ab".into())
    );
    assert_eq!(
        sidecar_volume_name("ubuntu:22.04", &[], &format!("sha256:{HEX}")),
        Some("ubuntu-0123456789ab".into())
    );
    assert_eq!(
        sidecar_volume_name(
            "localhost:5000/team/agent:1",
            &[format!("localhost:5000/team/agent@sha256:{HEX}")],
            ""
        ),
        Some("localhost-5000-team-agent-0123456789ab".into())
    );
    // Unparsable names are used as written, like the Go worker.
    assert_eq!(
        sidecar_volume_name("My Image", &["bad-digest".into()], "sha256:abc"),
        Some("My-Image-abc".into())
    );
    assert_eq!(
        sidecar_volume_name("a", &[], "weird"),
        Some("a-weird".into())
    );
    assert_eq!(sidecar_volume_name("a", &[], ""), None);
    // Found by fuzzing: the digest part is mapped too.
    assert_eq!(
        sidecar_volume_name("a", &["a@sha256:ab/c\u{1b}é d".into()], ""),
        Some("a-ab-c---d".into())
    );
    assert_eq!(
        sidecar_volume_name("a", &[], "x:y:z/w"),
        Some("a-x-y-z-w".into())
    );
}
