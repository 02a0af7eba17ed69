use std::time::Duration;

use base64::Engine as _;

use super::*;
use crate::role::StatementClass;

async fn directory() -> (tempfile::TempDir, Directory) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::parse(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let directory = Directory::open(storage).await.unwrap();
    (dir, directory)
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn an_empty_directory_is_open_and_the_first_user_closes_it() {
    let (_dir, users) = directory().await;
    assert!(users.authenticate(None).await.unwrap().is_none());
    users
        .create_user(None, "root", "rootpass1", true)
        .await
        .unwrap();
    let error = users.authenticate(None).await.unwrap_err();
    assert!(matches!(error, Error::Unauthenticated(_)), "{error}");
}

#[tokio::test]
async fn basic_credentials_are_accepted_with_or_without_padding() {
    let (_dir, users) = directory().await;
    users
        .create_user(None, "ana", "password1", false)
        .await
        .unwrap();
    // "ana:password1" is 13 bytes: its base64 ends in padding.
    let padded = base64::engine::general_purpose::STANDARD.encode("ana:password1");
    assert!(padded.ends_with('='));
    let unpadded = padded.trim_end_matches('=');
    for encoded in [padded.as_str(), unpadded] {
        let access = users
            .authenticate(Some(&format!("Basic {encoded}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(access.user(), "ana");
    }
    let wrong = base64::engine::general_purpose::STANDARD.encode("ana:password2");
    let unknown = base64::engine::general_purpose::STANDARD.encode("bob:password1");
    let a = users
        .authenticate(Some(&format!("Basic {wrong}")))
        .await
        .unwrap_err();
    let b = users
        .authenticate(Some(&format!("Basic {unknown}")))
        .await
        .unwrap_err();
    assert_eq!(
        a.to_string(),
        b.to_string(),
        "no hint which of the two was wrong"
    );
    for garbage in ["Basic !!!", "Basic", "Token x", "Bearer "] {
        assert!(
            users.authenticate(Some(garbage)).await.is_err(),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn tokens_follow_the_user_new_password_drop_and_grants() {
    let (_dir, users) = directory().await;
    users
        .create_user(None, "ana", "password1", false)
        .await
        .unwrap();
    users
        .grant(None, "ana", "brand_a", Role::Writer)
        .await
        .unwrap();
    let token = users
        .login_for_token("ana", "password1", HOUR)
        .await
        .unwrap();
    let bearer = format!("Bearer {token}");
    let access = users.authenticate(Some(&bearer)).await.unwrap().unwrap();
    access.require("brand_a", StatementClass::Write).unwrap();
    users
        .grant(None, "ana", "brand_a", Role::Analyst)
        .await
        .unwrap();
    let access = users.authenticate(Some(&bearer)).await.unwrap().unwrap();
    assert!(
        access.require("brand_a", StatementClass::Write).is_err(),
        "grants are live"
    );
    users.set_password(None, "ana", "password2").await.unwrap();
    let error = users.authenticate(Some(&bearer)).await.unwrap_err();
    assert!(error.to_string().contains("revoked"), "{error}");
    let token = users
        .login_for_token("ana", "password2", HOUR)
        .await
        .unwrap();
    users.revoke_tokens(None, "ana").await.unwrap();
    assert!(
        users
            .authenticate(Some(&format!("Bearer {token}")))
            .await
            .is_err()
    );
    let token = users
        .login_for_token("ana", "password2", HOUR)
        .await
        .unwrap();
    users.drop_user(None, "ana").await.unwrap();
    users
        .create_user(None, "other", "password1", false)
        .await
        .unwrap();
    assert!(
        users
            .authenticate(Some(&format!("Bearer {token}")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn admins_manage_their_tenants_only() {
    let (_dir, users) = directory().await;
    users
        .create_user(None, "root", "rootpass1", true)
        .await
        .unwrap();
    users
        .create_user(None, "boss_a", "password1", false)
        .await
        .unwrap();
    users
        .grant(None, "boss_a", "brand_a", Role::Admin)
        .await
        .unwrap();
    users
        .create_user(None, "ana", "password1", false)
        .await
        .unwrap();
    users
        .grant(None, "ana", "brand_b", Role::Analyst)
        .await
        .unwrap();
    let boss = users.login("boss_a", "password1").await.unwrap();
    users
        .create_user(Some(&boss), "new_a", "password1", false)
        .await
        .unwrap();
    users
        .grant(Some(&boss), "new_a", "brand_a", Role::Writer)
        .await
        .unwrap();
    assert!(
        users
            .grant(Some(&boss), "new_a", "brand_b", Role::Writer)
            .await
            .is_err()
    );
    assert!(
        users
            .create_user(Some(&boss), "evil", "password1", true)
            .await
            .is_err()
    );
    assert!(
        users.drop_user(Some(&boss), "ana").await.is_err(),
        "ana is brand_b's"
    );
    assert!(
        users
            .set_password(Some(&boss), "root", "password9")
            .await
            .is_err()
    );
    let seen: Vec<String> = users
        .visible_users(Some(&boss))
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(seen, ["boss_a", "new_a"]);
    users.drop_user(Some(&boss), "new_a").await.unwrap();
    let error = users.drop_user(None, "root").await.unwrap_err();
    assert!(error.to_string().contains("last superuser"), "{error}");
}

#[tokio::test]
async fn bad_names_passwords_and_duplicates_change_nothing() {
    let (_dir, users) = directory().await;
    assert!(
        users
            .create_user(None, "Bad Name", "password1", false)
            .await
            .is_err()
    );
    assert!(
        users
            .create_user(None, "ana", "short", false)
            .await
            .is_err()
    );
    assert!(users.is_open().await.unwrap());
    users
        .create_user(None, "ana", "password1", false)
        .await
        .unwrap();
    let error = users
        .create_user(None, "ana", "password2", false)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AlreadyExists(_)));
    users.login("ana", "password1").await.unwrap();
    assert!(matches!(
        users.revoke(None, "ana", "brand_a").await.unwrap_err(),
        Error::NotFound(_)
    ));
}

#[tokio::test]
async fn a_damaged_users_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::parse(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    storage
        .write_system_file(USERS_FILE, b"{nope".to_vec())
        .await
        .unwrap();
    let error = Directory::open(storage).await.unwrap_err();
    assert!(
        error.to_string().contains("users.json is damaged"),
        "{error}"
    );
}

#[test]
fn the_dummy_hash_is_a_valid_hash() {
    assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
}
