//! Fleet PKI: CA lifecycle, agent identity in certificates, bundles, revocation, and the
//! certificates the ingest tests need (another CA's, expired ones).

// One module named after the area, so `cargo test -p stallwatch-collector pki` selects these.
mod pki {
    use std::fs;
    use std::path::Path;

    use clap::Parser;
    use stallwatch_collector::pki::{
        self, AgentIdentity, Ca, CaArgs, PkiError, RevocationList, Validity, agent_identity,
        certificate_serial, inspect_certificate, load_bundle, verify_issued_by,
    };
    use tempfile::TempDir;
    use time::{Duration, OffsetDateTime};

    /// A scratch directory, removed on drop.
    fn scratch() -> TempDir {
        stallwatch_tests::scratch_dir("pki")
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn new_ca(tmp: &TempDir) -> Ca {
        Ca::init(&tmp.path().join("ca"), now(), false).unwrap()
    }

    fn identity(name: &str, region: &str, network_type: &str) -> AgentIdentity {
        AgentIdentity::new(name, region, network_type).unwrap()
    }

    fn year() -> Validity {
        Validity::days_from(now(), 365).unwrap()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_a_ten_year_ca_with_a_private_key_and_empty_lists() {
        let tmp = scratch();
        let ca = new_ca(&tmp);
        let dir = tmp.path().join("ca");
        let info = inspect_certificate(ca.certificate()).unwrap();
        assert!(info.is_ca);
        assert!(
            info.subject.starts_with("CN=stallwatch fleet CA, O=stallwatch, OU=ca "),
            "{}",
            info.subject
        );
        assert_eq!(info.subject, info.issuer, "self-signed");
        let years = (info.not_after - now()).whole_days() / 365;
        assert_eq!(years, 10);
        assert_eq!(pki::load_ca_certificate(&dir.join("ca.pem")).unwrap(), *ca.certificate());
        let pem = fs::read_to_string(dir.join("ca.pem")).unwrap();
        assert!(pem.starts_with("# stallwatch fleet CA certificate"), "{pem}");
        assert!(RevocationList::load(&dir.join("revoked.json")).unwrap().is_empty());
        assert!(ca.issued().unwrap().agents.is_empty());
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join("ca.key")), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
    }

    #[test]
    fn an_issued_agent_reads_back_exactly_its_identity_from_the_bundle() {
        let tmp = scratch();
        let ca = new_ca(&tmp);
        let id = identity("edge-fra-1", "eu-central", "4g");
        let cred = ca.issue_agent(&id, year()).unwrap();
        let path = tmp.path().join("edge-fra-1.bundle.pem");
        cred.write_bundle(&path).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);

        let bundle = load_bundle(&path).unwrap();
        assert_eq!(bundle.cert_chain.len(), 1);
        assert_eq!(bundle.ca, *ca.certificate());
        assert_eq!(agent_identity(&bundle.cert_chain[0]).unwrap(), id);
        assert_eq!(bundle.identity().unwrap(), id);
        verify_issued_by(&bundle.cert_chain[0], &bundle.ca).unwrap();

        let info = inspect_certificate(&bundle.cert_chain[0]).unwrap();
        assert_eq!(info.subject, "CN=edge-fra-1");
        assert_eq!(info.uris, ["stallwatch:agent/edge-fra-1?region=eu-central&network_type=4g"]);
        assert!(info.client_auth && !info.server_auth && !info.is_ca);
        assert_eq!(info.serial, cred.serial);
        assert_eq!(info.serial.len(), 32, "128-bit serial");
        assert_eq!(info.issuer, inspect_certificate(ca.certificate()).unwrap().subject);

        let issued = ca.issued().unwrap();
        assert_eq!(issued.agents.len(), 1);
        let rec = &issued.agents[0];
        assert_eq!(
            (rec.name.as_str(), rec.region.as_str(), rec.network_type.as_str()),
            ("edge-fra-1", "eu-central", "4g")
        );
        assert_eq!(rec.serial, certificate_serial(&bundle.cert_chain[0]).unwrap());
        assert_eq!(rec.not_after, info.not_after);
    }

    #[test]
    fn the_bundle_says_what_each_block_is() {
        let tmp = scratch();
        let ca = new_ca(&tmp);
        let text =
            ca.issue_agent(&identity("edge-1", "us-east", "fiber"), year()).unwrap().bundle_pem();
        let blocks: Vec<&str> = text.split("-----END").collect();
        assert_eq!(blocks.len(), 4, "three PEM blocks");
        for (block, (comment, label)) in blocks.iter().zip([
            ("# Agent certificate: CN=edge-1", "CERTIFICATE"),
            ("# Agent private key for edge-1", "PRIVATE KEY"),
            ("# Fleet CA certificate: CN=stallwatch fleet CA", "CERTIFICATE"),
        ]) {
            let c = block.find(comment).unwrap_or_else(|| panic!("{comment:?} missing:\n{text}"));
            let b = block.find(&format!("-----BEGIN {label}-----")).unwrap();
            assert!(c < b, "comment above the block");
        }
    }

    #[test]
    fn init_refuses_to_overwrite_a_ca_unless_forced() {
        let tmp = scratch();
        let dir = tmp.path().join("ca");
        let first = Ca::init(&dir, now(), false).unwrap();
        let old_agent = first.issue_agent(&identity("edge-1", "eu", "5g"), year()).unwrap();

        let err = Ca::init(&dir, now(), false).unwrap_err();
        assert!(matches!(err, PkiError::CaExists { .. }));
        let msg = err.to_string();
        assert!(msg.contains("already holds a CA") && msg.contains("--force"), "{msg}");
        assert_eq!(Ca::load(&dir).unwrap().certificate(), first.certificate(), "untouched");

        let second = Ca::init(&dir, now(), true).unwrap();
        assert_ne!(second.certificate(), first.certificate());
        assert!(verify_issued_by(&old_agent.cert, second.certificate()).is_err());
        assert!(second.issued().unwrap().agents.is_empty());
    }

    #[test]
    fn revocation_round_trip() {
        let tmp = scratch();
        let ca = new_ca(&tmp);
        let a1 = ca.issue_agent(&identity("edge-1", "eu", "wifi"), year()).unwrap();
        let a2 = ca.issue_agent(&identity("edge-1", "eu", "wifi"), year()).unwrap();
        let b = ca.issue_agent(&identity("edge-2", "eu", "wifi"), year()).unwrap();

        let r = ca.revoke("edge-1", false, now()).unwrap();
        assert!(r.changed);
        assert_eq!(r.serials, [a1.serial.clone(), a2.serial.clone()]);
        let list = RevocationList::load(&ca.revoked_path()).unwrap();
        assert!(list.is_revoked("edge-1", &a1.serial));
        assert!(list.is_revoked("edge-1", &a2.serial));
        assert!(!list.is_revoked("edge-2", &b.serial));

        // Idempotent.
        assert!(!ca.revoke("edge-1", false, now()).unwrap().changed);
        assert_eq!(RevocationList::load(&ca.revoked_path()).unwrap(), list);

        // Unknown names need --force.
        let err = ca.revoke("edge-9", false, now()).unwrap_err().to_string();
        assert!(err.contains("no agent named edge-9") && err.contains("--force"), "{err}");
        assert!(ca.revoke("edge-9", true, now()).unwrap().changed);
        assert!(RevocationList::load(&ca.revoked_path()).unwrap().is_revoked("edge-9", "01"));

        // A revoked name is not reissued by accident; reinstating keeps old serials revoked.
        let err = ca.issue_agent(&identity("edge-1", "eu", "wifi"), year()).unwrap_err();
        assert!(matches!(err, PkiError::AgentRevoked { .. }), "{err}");
        assert!(ca.reinstate("edge-1").unwrap());
        let a3 = ca.issue_agent(&identity("edge-1", "eu", "wifi"), year()).unwrap();
        let list = RevocationList::load(&ca.revoked_path()).unwrap();
        assert!(!list.is_revoked("edge-1", &a3.serial));
        assert!(list.is_revoked("edge-1", &a1.serial));
    }

    #[test]
    fn bad_names_regions_network_types_and_hosts_are_rejected_naming_the_field() {
        let tmp = scratch();
        let ca = new_ca(&tmp);
        for (id, field) in [
            (
                AgentIdentity {
                    name: "Edge 1".into(),
                    region: "eu".into(),
                    network_type: "5g".into(),
                },
                "agent name",
            ),
            (
                AgentIdentity {
                    name: "x".repeat(65),
                    region: "eu".into(),
                    network_type: "5g".into(),
                },
                "agent name",
            ),
            (
                AgentIdentity {
                    name: String::new(),
                    region: "eu".into(),
                    network_type: "5g".into(),
                },
                "agent name",
            ),
            (
                AgentIdentity {
                    name: "e".into(),
                    region: "EU_West".into(),
                    network_type: "5g".into(),
                },
                "region",
            ),
            (
                AgentIdentity {
                    name: "e".into(),
                    region: "r".repeat(33),
                    network_type: "5g".into(),
                },
                "region",
            ),
            (
                AgentIdentity { name: "e".into(), region: "eu".into(), network_type: "lte".into() },
                "network type",
            ),
            (
                AgentIdentity {
                    name: "e&x=1".into(),
                    region: "eu".into(),
                    network_type: "5g".into(),
                },
                "agent name",
            ),
        ] {
            let err = ca.issue_agent(&id, year()).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid {field} ")), "{err}");
        }
        let err = ca.issue_collector(&["collector.example.net".into(), "bad host!".into()], year());
        assert_eq!(
            err.unwrap_err().to_string(),
            "invalid host \"bad host!\": expected an IP address or a DNS name \
         (labels of letters, digits and -, no wildcards)"
        );
        assert!(ca.issued().unwrap().agents.is_empty(), "nothing recorded for refused requests");
    }

    #[test]
    fn a_certificate_from_another_ca_has_another_issuer_and_does_not_verify() {
        let tmp = scratch();
        let ours = Ca::init(&tmp.path().join("ours"), now(), false).unwrap();
        let theirs = Ca::init(&tmp.path().join("theirs"), now(), false).unwrap();
        let id = identity("edge-1", "eu", "fiber");
        let foreign = theirs.issue_agent(&id, year()).unwrap();

        let our_name = inspect_certificate(ours.certificate()).unwrap().subject;
        let foreign_issuer = inspect_certificate(&foreign.cert).unwrap().issuer;
        assert_ne!(foreign_issuer, our_name);
        let err = verify_issued_by(&foreign.cert, ours.certificate()).unwrap_err();
        assert!(matches!(err, PkiError::NotIssuedBy(_)), "{err}");
        // Same name, same identity: only the chain tells them apart.
        assert_eq!(agent_identity(&foreign.cert).unwrap(), id);

        // A bundle that pairs the foreign certificate with our CA is refused on load.
        let mixed = tmp.path().join("mixed.bundle.pem");
        let good = foreign.bundle_pem();
        let ca_start = good.rfind("# Fleet CA").unwrap();
        let our_ca = fs::read_to_string(tmp.path().join("ours").join("ca.pem")).unwrap();
        fs::write(&mixed, format!("{}{our_ca}", &good[..ca_start])).unwrap();
        let err = load_bundle(&mixed).unwrap_err().to_string();
        assert!(
            err.contains("mixed.bundle.pem") && err.contains("not signed by the bundle's CA"),
            "{err}"
        );
    }

    #[test]
    fn expired_certificates_can_be_minted_for_tests_but_days_cannot_be_zero() {
        let tmp = scratch();
        let ca = new_ca(&tmp);
        let t = now();
        let expired = Validity::new(t - Duration::days(30), t - Duration::days(1)).unwrap();
        let cred = ca.issue_agent(&identity("edge-old", "eu", "3g"), expired).unwrap();
        let info = inspect_certificate(&cred.cert).unwrap();
        assert!(info.not_after < t);
        assert_eq!(info.not_after, expired.not_after);
        verify_issued_by(&cred.cert, ca.certificate()).unwrap();

        assert!(Validity::days_from(t, 0).unwrap_err().to_string().contains("at least 1"));
        assert!(Validity::new(t, t).is_err());
        let err = ca.issue_agent(
            &identity("edge-2", "eu", "3g"),
            Validity::days_from(t, 20 * 365).unwrap(),
        );
        assert!(err.unwrap_err().to_string().contains("outlive the CA"));
    }

    #[test]
    fn collector_certificates_name_their_hosts_and_are_not_agents() {
        let tmp = scratch();
        let ca = new_ca(&tmp);
        let hosts = ["Collector.example.net", "127.0.0.1", "::1", "collector.example.net"]
            .map(String::from);
        let cred = ca.issue_collector(&hosts, year()).unwrap();
        assert_eq!(
            cred.hosts,
            ["collector.example.net", "127.0.0.1", "::1"],
            "lowercased, deduplicated"
        );
        let info = inspect_certificate(&cred.cert).unwrap();
        assert_eq!(info.subject, "CN=collector.example.net");
        assert_eq!(info.dns_names, ["collector.example.net"]);
        assert_eq!(
            info.ip_addresses,
            ["127.0.0.1".parse::<std::net::IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
        assert!(info.server_auth && !info.client_auth);
        verify_issued_by(&cred.cert, ca.certificate()).unwrap();
        let err = agent_identity(&cred.cert).unwrap_err().to_string();
        assert!(err.starts_with("not a stallwatch agent certificate"), "{err}");
        assert!(agent_identity(ca.certificate()).is_err());

        let (cert, key) = (tmp.path().join("c.pem"), tmp.path().join("c.key"));
        cred.write(&cert, &key).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o600);
        assert!(
            fs::read_to_string(&cert).unwrap().starts_with("# stallwatch collector certificate")
        );
    }

    #[test]
    fn broken_files_are_errors_that_name_the_file() {
        let tmp = scratch();
        let ca = new_ca(&tmp);
        let dir = tmp.path().join("ca");

        let err = Ca::load(&tmp.path().join("nowhere")).unwrap_err().to_string();
        assert!(err.starts_with("no CA in ") && err.contains("ca init"), "{err}");

        let missing = tmp.path().join("missing.bundle.pem");
        let err = load_bundle(&missing).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read {}", missing.display())), "{err}");

        let junk = tmp.path().join("junk.pem");
        for (content, expect) in [
            ("hello", "expected the agent certificate and the CA certificate, found 0"),
            ("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "invalid PEM"),
            (
                "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
                "found 1 certificate",
            ),
        ] {
            fs::write(&junk, content).unwrap();
            let err = load_bundle(&junk).unwrap_err().to_string();
            assert!(err.starts_with(&junk.display().to_string()) && err.contains(expect), "{err}");
        }

        // The right certificates with another agent's key.
        let a = ca.issue_agent(&identity("edge-a", "eu", "5g"), year()).unwrap().bundle_pem();
        let b = ca.issue_agent(&identity("edge-b", "eu", "5g"), year()).unwrap().bundle_pem();
        let key_of = |s: &str| {
            let start = s.find("-----BEGIN PRIVATE KEY-----").unwrap();
            let end = s.find("-----END PRIVATE KEY-----").unwrap();
            s[start..end].to_string()
        };
        fs::write(&junk, a.replace(&key_of(&a), &key_of(&b))).unwrap();
        let err = load_bundle(&junk).unwrap_err().to_string();
        assert!(err.contains("private key does not belong to the agent certificate"), "{err}");

        // Lists: malformed JSON names the file and the line; a typo is not an empty deny-list.
        let revoked = dir.join("revoked.json");
        fs::write(&revoked, "{\n  \"names\": {},\n  \"serial\": {}\n}\n").unwrap();
        let err = RevocationList::load(&revoked).unwrap_err().to_string();
        assert!(err.starts_with(&revoked.display().to_string()) && err.contains("line 3"), "{err}");
        fs::remove_file(&revoked).unwrap();
        assert!(RevocationList::load(&revoked).unwrap_err().to_string().starts_with("cannot read"));

        // A CA key that is not the certificate's.
        let other = Ca::init(&tmp.path().join("other"), now(), false).unwrap();
        fs::copy(other.dir().join("ca.key"), dir.join("ca.key")).unwrap();
        let err = Ca::load(&dir).unwrap_err().to_string();
        assert!(err.contains("ca.key") && err.contains("is not the key of"), "{err}");
    }

    /// A cut or padded certificate, wherever it arrives, is an error that says what is wrong
    /// with it (and which file it came from), never a panic.
    #[test]
    fn truncated_certificates_are_clear_errors() {
        use base64::Engine as _;
        let tmp = scratch();
        let ca = new_ca(&tmp);
        let cred = ca.issue_agent(&identity("edge-1", "eu", "5g"), year()).unwrap();
        let der = cred.cert.to_vec();

        for cut in 0..der.len() {
            let short = &der[..cut];
            for err in [
                inspect_certificate(short).unwrap_err(),
                agent_identity(short).unwrap_err(),
                certificate_serial(short).unwrap_err(),
            ] {
                let msg = err.to_string();
                assert!(msg.starts_with("malformed certificate: truncated"), "cut {cut}: {msg}");
            }
            let msg = verify_issued_by(short, ca.certificate()).unwrap_err().to_string();
            assert!(msg.contains("truncated"), "cut {cut}: {msg}");
        }
        let mut longer = der.clone();
        longer.extend_from_slice(&[0x05, 0x00]);
        let msg = inspect_certificate(&longer).unwrap_err().to_string();
        assert!(msg.contains("unexpected data after the certificate"), "{msg}");

        // In a bundle: the file, which certificate, and why.
        let pem = cred.bundle_pem();
        let (begin, end) = ("-----BEGIN CERTIFICATE-----\n", "\n-----END CERTIFICATE-----");
        let body = pem.find(begin).unwrap() + begin.len();
        let body_end = body + pem[body..].find(end).unwrap();
        let cut = base64::engine::general_purpose::STANDARD.encode(&der[..der.len() / 2]);
        let file = tmp.path().join("cut.bundle.pem");
        fs::write(&file, format!("{}{cut}{}", &pem[..body], &pem[body_end..])).unwrap();
        let msg = load_bundle(&file).unwrap_err().to_string();
        assert!(
            msg.starts_with(&file.display().to_string())
                && msg.contains("certificate 1 is malformed: truncated"),
            "{msg}"
        );
    }

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand)]
    enum Top {
        Ca(CaArgs),
    }

    fn run(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
        let argv = ["stallwatch-collector", "ca", "--dir", dir.to_str().unwrap()]
            .into_iter()
            .chain(args.iter().copied());
        let Top::Ca(args) = Cli::try_parse_from(argv).unwrap().command;
        pki::main(args)
    }

    /// Verifies a collector certificate as an agent does (rustls' WebPKI verifier), with the
    /// CRL file `ca` wrote, at `now`.
    fn agent_verifies(
        ca: &Ca,
        crl_pem: &[u8],
        cert_pem: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{
            CertificateDer, CertificateRevocationListDer, ServerName, UnixTime,
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate().clone()).unwrap();
        let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(crl_pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(crls.len(), 1);
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .enforce_revocation_expiration()
        .build()
        .unwrap();
        let cert = CertificateDer::from_pem_slice(cert_pem).unwrap();
        let at =
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.unix_timestamp() as u64));
        let name = ServerName::try_from("collector.example.net").unwrap();
        verifier.verify_server_cert(&cert, &[], &name, &[], at).map(|_| ())
    }

    /// Collector certificates last 90 days by default; `revoke-collector` writes a CA-signed
    /// CRL that agents' verifier honours: the revoked certificate is refused, a new one is
    /// accepted, and the CRL itself stops being accepted after its next update.
    #[test]
    fn collector_certificates_are_short_lived_and_revocable() {
        let tmp = scratch();
        let dir = tmp.path().join("ca");
        run(&dir, &["init"]).unwrap();
        let (old, new) = (tmp.path().join("old.pem"), tmp.path().join("new.pem"));
        for (cert, key) in [(&old, tmp.path().join("old.key")), (&new, tmp.path().join("new.key"))]
        {
            let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
            run(
                &dir,
                &["issue-collector", "collector.example.net", "--out-cert", cert, "--out-key", key],
            )
            .unwrap();
        }
        let der: rustls_pki_types::CertificateDer<'static> =
            rustls_pki_types::pem::PemObject::from_pem_slice(&fs::read(&old).unwrap()).unwrap();
        let info = inspect_certificate(&der).unwrap();
        let lifetime = info.not_after - info.not_before;
        assert_eq!(lifetime, Duration::days(90) + pki::BACKDATE, "90 days by default");

        run(&dir, &["revoke-collector", &info.serial, "--crl-days", "7"]).unwrap();
        let ca = Ca::load(&dir).unwrap();
        let crl = fs::read(dir.join(pki::COLLECTOR_CRL_FILE)).unwrap();
        let now = OffsetDateTime::now_utc();
        let refused = agent_verifies(&ca, &crl, &fs::read(&old).unwrap(), now).unwrap_err();
        assert!(
            matches!(refused, rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)),
            "{refused:?}"
        );
        agent_verifies(&ca, &crl, &fs::read(&new).unwrap(), now).unwrap();
        let expired = agent_verifies(&ca, &crl, &fs::read(&new).unwrap(), now + Duration::days(8))
            .unwrap_err();
        assert!(format!("{expired:?}").contains("Expired"), "{expired:?}");
        // Signing it again keeps the revocation and gives a higher CRL number.
        run(&dir, &["collector-crl", "--crl-days", "30"]).unwrap();
        let again = fs::read(dir.join(pki::COLLECTOR_CRL_FILE)).unwrap();
        assert!(String::from_utf8_lossy(&again).contains("CRL number 2"));
        agent_verifies(&ca, &again, &fs::read(&old).unwrap(), now + Duration::days(8)).unwrap_err();
        agent_verifies(&ca, &again, &fs::read(&new).unwrap(), now + Duration::days(8)).unwrap();
        assert!(run(&dir, &["revoke-collector", "not-hex!"]).is_err());
    }

    #[test]
    fn the_ca_command_runs_init_issue_revoke_and_list() {
        let tmp = scratch();
        let dir = tmp.path().join("ca");
        run(&dir, &["init"]).unwrap();
        let err = run(&dir, &["init"]).unwrap_err();
        assert!(format!("{err:#}").contains("already holds a CA"));
        let bundle = tmp.path().join("edge-1.bundle.pem");
        let out = bundle.to_str().unwrap();
        run(
            &dir,
            &[
                "issue-agent",
                "edge-1",
                "--region",
                "ap-south",
                "--network-type",
                "wifi",
                "--out",
                out,
            ],
        )
        .unwrap();
        assert_eq!(
            load_bundle(&bundle).unwrap().identity().unwrap(),
            identity("edge-1", "ap-south", "wifi")
        );
        run(&dir, &["issue-collector", "localhost", "127.0.0.1"]).unwrap();
        assert!(dir.join("collector.pem").exists() && dir.join("collector.key").exists());
        run(&dir, &["revoke", "edge-1"]).unwrap();
        run(&dir, &["revoke", "edge-1"]).unwrap();
        let err = run(
            &dir,
            &[
                "issue-agent",
                "edge-1",
                "--region",
                "ap-south",
                "--network-type",
                "wifi",
                "--out",
                out,
            ],
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("is revoked"));
        run(
            &dir,
            &[
                "issue-agent",
                "edge-1",
                "--region",
                "ap-south",
                "--network-type",
                "wifi",
                "--out",
                out,
                "--force",
            ],
        )
        .unwrap();
        run(&dir, &["list"]).unwrap();
        run(&dir, &["list", "--json"]).unwrap();
        let err = run(
            &dir,
            &["issue-agent", "edge_2", "--region", "eu", "--network-type", "5g", "--out", out],
        );
        assert!(format!("{:#}", err.unwrap_err()).starts_with("invalid agent name \"edge_2\""));
    }

    mod never_panics {
        use proptest::prelude::*;

        use super::*;

        fn sample_cert() -> Vec<u8> {
            use std::sync::OnceLock;
            static CERT: OnceLock<Vec<u8>> = OnceLock::new();
            CERT.get_or_init(|| {
                let tmp = scratch();
                let ca = new_ca(&tmp);
                ca.issue_agent(&identity("edge-1", "eu", "5g"), year()).unwrap().cert.to_vec()
            })
            .clone()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn on_mutated_certificates(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
                let mut der = sample_cert();
                for (at, byte) in flips {
                    let i = at % der.len();
                    der[i] = byte;
                }
                der.truncate(der.len() - cut % 4);
                let _ = agent_identity(&der);
                let _ = inspect_certificate(&der);
                let _ = certificate_serial(&der);
                let _ = verify_issued_by(&der, &der);
            }

            #[test]
            fn on_random_bytes(der in proptest::collection::vec(any::<u8>(), 0..600)) {
                let _ = agent_identity(&der);
                let _ = inspect_certificate(&der);
            }
        }
    }

    /// A relay agent's certificate serves TLS for its host under the fleet CA, and is still
    /// the same agent identity; a plain agent certificate is not a server certificate.
    #[test]
    fn relay_agents_get_server_certificates_for_their_hosts() {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::{ServerName, UnixTime};

        let tmp = scratch();
        let ca = new_ca(&tmp);
        let relay = ca
            .issue_agent_relay(&identity("relay-1", "sea", "fiber"), year(), &["127.0.0.1".into()])
            .unwrap();
        let plain = ca.issue_agent(&identity("edge-1", "sea", "4g"), year()).unwrap();
        assert_eq!(agent_identity(&relay.cert).unwrap().name, "relay-1");

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate().clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(roots.into(), provider).build().unwrap();
        let host = ServerName::try_from("127.0.0.1").unwrap();
        let verify = |cert| verifier.verify_server_cert(cert, &[], &host, &[], UnixTime::now());
        verify(&relay.cert).expect("the relay certificate serves 127.0.0.1");
        let other = ServerName::try_from("10.0.0.1").unwrap();
        verifier
            .verify_server_cert(&relay.cert, &[], &other, &[], UnixTime::now())
            .expect_err("only the named host");
        verify(&plain.cert).expect_err("a plain agent certificate is not a server certificate");
    }
}
