use super::*;

/// A 2048-bit key made once with `openssl genpkey` (test fixture only), in both PEM layouts.
const KEY_PKCS8: &str = include_str!("test-key.pem");
const KEY_PKCS1: &str = include_str!("test-key-pkcs1.pem");
const NONCE: &[u8; 20] = b"abcdefghij0123456789";

#[test]
fn fast_path_verifies_only_the_right_password_and_nonce() {
    let stored = sha2_digest(b"secret");
    let response = scramble_sha2(NONCE, b"secret");
    assert_eq!(response.len(), 32);
    assert!(verify_sha2(NONCE, &response, &stored));
    assert!(!verify_sha2(NONCE, &scramble_sha2(NONCE, b"Secret"), &stored));
    assert!(!verify_sha2(b"ABCDEFGHIJ0123456789", &response, &stored));
    assert!(!verify_sha2(NONCE, &response[..31], &stored));
    assert!(!verify_sha2(NONCE, b"", &stored));
    assert!(scramble_sha2(NONCE, b"").is_empty());
}

#[test]
fn full_passwords_compare_by_content() {
    assert!(same_password(b"app", b"app"));
    assert!(!same_password(b"app", b"app2"));
    assert!(!same_password(b"", b"app"));
    assert!(same_password(b"", b""));
}

#[test]
fn keys_load_in_both_pem_layouts_and_refuse_garbage() {
    let a = RsaKey::from_pem(KEY_PKCS8).unwrap();
    let b = RsaKey::from_pem(KEY_PKCS1).unwrap();
    assert_eq!(a.public_pem(), b.public_pem());
    assert!(a.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(a.ciphertext_len(), 256);
    assert!(matches!(RsaKey::from_pem("not a key"), Err(RsaError::BadKey(_))));
    assert!(format!("{a:?}").contains("2048"), "debug output names the size, not the key");
}

/// What mysql_async (mysql_common's client code) sends must decrypt to the password.
#[test]
fn a_real_client_ciphertext_decrypts_to_the_password() {
    let key = RsaKey::from_pem(KEY_PKCS8).unwrap();
    let mut plain = b"s3cret pw\0".to_vec();
    for (i, b) in plain.iter_mut().enumerate() {
        *b ^= NONCE[i % NONCE.len()];
    }
    let ciphertext = mysql_common::crypto::encrypt(&plain, key.public_pem().as_bytes());
    assert_eq!(key.decrypt_password(&ciphertext, NONCE).unwrap().expose(), b"s3cret pw");
    assert!(matches!(key.decrypt_password(&ciphertext[1..], NONCE), Err(RsaError::Crypto)));
    let other_nonce = key.decrypt_password(&ciphertext, b"01234567890123456789").unwrap();
    assert_ne!(other_nonce.expose(), b"s3cret pw");
}

#[test]
fn our_client_side_encryption_round_trips() {
    let key = RsaKey::from_pem(KEY_PKCS8).unwrap();
    let ciphertext = encrypt_password(key.public_pem().as_bytes(), b"app", NONCE).unwrap();
    assert_eq!(ciphertext.len(), 256);
    assert_eq!(key.decrypt_password(&ciphertext, NONCE).unwrap().expose(), b"app");
    // Servers may send PKCS#1 public keys, and some pad the PEM with a NUL.
    let pkcs1 =
        rsa::pkcs1::EncodeRsaPublicKey::to_pkcs1_pem(&RsaPublicKey::from(&key.private), LineEnding::LF).unwrap();
    let ciphertext = encrypt_password(pkcs1.as_bytes(), b"app", NONCE).unwrap();
    assert_eq!(key.decrypt_password(&ciphertext, NONCE).unwrap().expose(), b"app");
    let mut with_nul = key.public_pem().as_bytes().to_vec();
    with_nul.push(0);
    assert!(encrypt_password(&with_nul, b"app", NONCE).is_ok());
    assert!(matches!(encrypt_password(b"-----BEGIN PUBLIC KEY-----\nxx\n", b"app", NONCE), Err(RsaError::BadKey(_))));
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    assert_eq!(format!("{:?}", Secret::new(b"pw".to_vec())), "Secret(..)");
}
