//! NIST ACVP known-answer tests for ML-KEM-768 (FIPS 203) and ML-DSA-65 (FIPS 204), through this crate's
//! identity where it exposes the operation and through the RustCrypto crates it wraps otherwise.
//!
//! Vectors: `tests/vectors/` (trimmed from usnistgov/ACVP-Server v1.1.0.43; provenance and the call used for
//! each case in `tests/vectors/README.md`).
#![allow(deprecated)] // the expanded key encodings ACVP uses are deprecated in the crates

use ml_dsa::{ExpandedSigningKey, MlDsa65, Signature, VerifyingKey};
use ml_kem::array::Array;
use ml_kem::{Decapsulate, DecapsulationKey, EncapsulationKey, ExpandedKeyEncoding, MlKem768};
use ruvector_dag_network::{NodeIdentity, PublicIdentity};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn hex(case: &Value, field: &str) -> Vec<u8> {
    hex::decode(case[field].as_str().unwrap_or_else(|| panic!("field {field} in {case}"))).unwrap()
}

/// (group, case) pairs of a file.
fn cases(file: &Value) -> Vec<(&Value, &Value)> {
    file["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap().iter().map(move |t| (g, t)))
        .collect()
}

#[test]
fn ml_kem_768_key_generation() {
    let file = load("mlkem768-keygen.json");
    let all = cases(&file);
    assert_eq!(all.len(), 10);
    for (_, case) in all {
        let seed: [u8; 64] = [hex(case, "d"), hex(case, "z")].concat().try_into().unwrap();
        // Our identity derives its KEM key from the same d ‖ z seed.
        let id = NodeIdentity::from_seeds(&[0; 32], &seed);
        assert_eq!(id.public().kem_key_bytes(), hex(case, "ek"), "tcId {}", case["tcId"]);
        let dk = DecapsulationKey::<MlKem768>::from_seed(Array::from(seed));
        assert_eq!(dk.to_expanded_bytes().to_vec(), hex(case, "dk"), "tcId {}", case["tcId"]);
    }
}

#[test]
fn ml_kem_768_encapsulation_decapsulation_and_key_checks() {
    let file = load("mlkem768-encapdecap.json");
    let mut seen = [0; 4];
    for (group, case) in cases(&file) {
        let id = &case["tcId"];
        match group["function"].as_str().unwrap() {
            "encapsulation" => {
                let ek = EncapsulationKey::<MlKem768>::new(&Array::try_from(&hex(case, "ek")[..]).unwrap()).unwrap();
                let m = Array::try_from(&hex(case, "m")[..]).unwrap();
                let (c, k) = ek.encapsulate_deterministic(&m);
                assert_eq!(c.to_vec(), hex(case, "c"), "tcId {id}");
                assert_eq!(k.to_vec(), hex(case, "k"), "tcId {id}");
                seen[0] += 1;
            }
            "decapsulation" => {
                let dk =
                    DecapsulationKey::<MlKem768>::from_expanded_bytes(&Array::try_from(&hex(case, "dk")[..]).unwrap())
                        .unwrap();
                let c = ml_kem::Ciphertext::<MlKem768>::try_from(&hex(case, "c")[..]).unwrap();
                // Modified ciphertexts give the implicit-rejection key J(z ‖ c), which the vectors list too.
                assert_eq!(dk.decapsulate(&c).to_vec(), hex(case, "k"), "tcId {id}");
                seen[1] += 1;
            }
            "encapsulationKeyCheck" => {
                let ek = Array::try_from(&hex(case, "ek")[..]).unwrap();
                let pass = case["testPassed"].as_bool().unwrap();
                assert_eq!(EncapsulationKey::<MlKem768>::new(&ek).is_ok(), pass, "tcId {id}");
                // Our public identity applies the same check to peers' keys.
                let dsa = NodeIdentity::generate();
                let peer = PublicIdentity::from_bytes(dsa.public().verifying_key_bytes(), &hex(case, "ek"));
                assert_eq!(peer.is_ok(), pass, "tcId {id}");
                seen[2] += 1;
            }
            "decapsulationKeyCheck" => {
                let dk = Array::try_from(&hex(case, "dk")[..]).unwrap();
                let pass = case["testPassed"].as_bool().unwrap();
                assert_eq!(DecapsulationKey::<MlKem768>::from_expanded_bytes(&dk).is_ok(), pass, "tcId {id}");
                seen[3] += 1;
            }
            other => panic!("unexpected function {other}"),
        }
    }
    assert_eq!(seen, [10, 10, 6, 6]);
}

#[test]
fn ml_dsa_65_key_generation() {
    let file = load("mldsa65-keygen.json");
    let all = cases(&file);
    assert_eq!(all.len(), 10);
    for (_, case) in all {
        let seed: [u8; 32] = hex(case, "seed").try_into().unwrap();
        let id = NodeIdentity::from_seeds(&seed, &[0; 64]);
        assert_eq!(id.public().verifying_key_bytes(), hex(case, "pk"), "tcId {}", case["tcId"]);
        let sk = ExpandedSigningKey::<MlDsa65>::from_seed(&Array::from(seed));
        assert_eq!(sk.to_expanded().to_vec(), hex(case, "sk"), "tcId {}", case["tcId"]);
    }
}

#[test]
fn ml_dsa_65_signature_generation() {
    let file = load("mldsa65-siggen.json");
    let mut n = 0;
    for (group, case) in cases(&file) {
        let id = &case["tcId"];
        let sk = ExpandedSigningKey::<MlDsa65>::from_expanded(&Array::try_from(&hex(case, "sk")[..]).unwrap());
        let deterministic = group["deterministic"].as_bool().unwrap();
        let signature = match (group["signatureInterface"].as_str().unwrap(), deterministic) {
            ("external", true) => sk.sign_deterministic(&hex(case, "message"), &hex(case, "context")).unwrap(),
            ("external", false) => {
                let ctx = hex(case, "context");
                let rnd = Array::try_from(&hex(case, "rnd")[..]).unwrap();
                sk.sign_internal(&[&[0, ctx.len() as u8], &ctx, &hex(case, "message")], &rnd)
            }
            ("internal", true) if group["externalMu"].as_bool() == Some(true) => {
                sk.sign_mu_deterministic(&Array::try_from(&hex(case, "mu")[..]).unwrap())
            }
            ("internal", true) => sk.sign_internal(&[&hex(case, "message")], &Array::default()),
            other => panic!("unexpected group {other:?}"),
        };
        assert_eq!(signature.encode().to_vec(), hex(case, "signature"), "tcId {id}");
        n += 1;
    }
    assert_eq!(n, 16);
}

#[test]
fn ml_dsa_65_signature_verification() {
    let file = load("mldsa65-sigver.json");
    let kem_holder = NodeIdentity::generate();
    let (mut passed, mut failed) = (0, 0);
    for (group, case) in cases(&file) {
        let id = &case["tcId"];
        let pk = hex(case, "pk");
        let vk = VerifyingKey::<MlDsa65>::decode(&Array::try_from(&pk[..]).unwrap());
        let sig_bytes = hex(case, "signature");
        let sig = Signature::<MlDsa65>::try_from(&sig_bytes[..]).ok();
        let expected = case["testPassed"].as_bool().unwrap();
        let ok = match (group["signatureInterface"].as_str().unwrap(), group["externalMu"].as_bool()) {
            ("external", _) => {
                // Through our public identity: the path every received envelope takes.
                let peer = PublicIdentity::from_bytes(&pk, &kem_holder.public().kem_key_bytes()).unwrap();
                let ours = peer.verify(&hex(case, "context"), &hex(case, "message"), &sig_bytes);
                let crate_says = sig
                    .as_ref()
                    .is_some_and(|s| vk.verify_with_context(&hex(case, "message"), &hex(case, "context"), s));
                assert_eq!(ours, crate_says, "tcId {id}");
                ours
            }
            ("internal", Some(true)) => {
                sig.is_some_and(|s| vk.verify_mu(&Array::try_from(&hex(case, "mu")[..]).unwrap(), &s))
            }
            ("internal", _) => sig.is_some_and(|s| vk.verify_internal(&hex(case, "message"), &s)),
            other => panic!("unexpected group {other:?}"),
        };
        assert_eq!(ok, expected, "tcId {id} ({})", case["reason"]);
        if expected { passed += 1 } else { failed += 1 }
    }
    assert_eq!((passed, failed), (6, 12));
}
