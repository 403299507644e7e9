//! The conformance suite of [`SecretVersions`] (feature `test-util`): Secrets Manager's staging
//! semantics (`AWSCURRENT`, `AWSPENDING`, `AWSPREVIOUS`), checked against the SQLite store and
//! Secrets Manager (through moto) alike.
//!
//! The suite starts from a secret whose version `initial_version` holds `"v1"` and is
//! `AWSCURRENT`, rotation enabled, and begins rotations through `start(token, value)`, as
//! `RotateSecret` does: a version with no value staged `AWSPENDING` (then `start` answers
//! `true`). moto cannot leave such a placeholder (its `RotateSecret` without a rotation Lambda
//! makes the new version current at once), so there `start` stores `value` staged `AWSPENDING`
//! and answers `false`.

use std::future::Future;

use crate::ports::{AWSCURRENT, AWSPENDING, AWSPREVIOUS, SecretError, SecretVersions};

fn text(v: Option<crate::ports::SecretValue>) -> Option<String> {
    v.map(|v| v.text.expose().clone())
}

/// Every promise of [`SecretVersions`], in one walk through two rotations. `start(token,
/// value)` begins a rotation with that token (see the module's documentation).
pub async fn secret_versions_contract<F, Fut>(
    secret: &dyn SecretVersions,
    initial_version: &str,
    start: F,
) where
    F: Fn(String, &'static str) -> Fut,
    Fut: Future<Output = bool>,
{
    let meta = secret.describe().await.expect("describe");
    assert!(meta.has_stage(initial_version, AWSCURRENT), "{meta:?}");
    assert_eq!(meta.version_with(AWSCURRENT), Some(initial_version));
    let cur = secret
        .get_by_stage(AWSCURRENT)
        .await
        .expect("get")
        .expect("current");
    assert_eq!(cur.version_id, initial_version);
    assert_eq!(cur.text.expose(), "v1");
    assert!(cur.stages.iter().any(|s| s == AWSCURRENT));
    assert_eq!(
        text(secret.get_by_stage(AWSPENDING).await.expect("get")),
        None
    );
    assert_eq!(
        text(
            secret
                .get_version("no-such-version-0000000000000000000")
                .await
                .expect("get")
        ),
        None
    );

    // Rotation 1: a placeholder, then its value.
    let t1 = format!("{}-rot1", crate::testing::unique("t"));
    let placeholder = start(t1.clone(), "v2").await;
    let meta = secret.describe().await.expect("describe");
    assert!(meta.rotation_enabled, "rotation enabled");
    assert!(meta.has_stage(&t1, AWSPENDING), "{meta:?}");
    assert!(meta.has_stage(initial_version, AWSCURRENT), "{meta:?}");
    if placeholder {
        assert_eq!(
            text(secret.get_by_stage(AWSPENDING).await.expect("get")),
            None,
            "the placeholder has no value"
        );
        assert_eq!(text(secret.get_version(&t1).await.expect("get")), None);
    }
    secret
        .put_version(&t1, "v2", &[AWSPENDING])
        .await
        .expect("put");
    secret
        .put_version(&t1, "v2", &[AWSPENDING])
        .await
        .expect("the same put again is fine");
    assert!(
        matches!(
            secret.put_version(&t1, "other", &[AWSPENDING]).await,
            Err(SecretError::Invalid(_))
        ),
        "another value under an existing version is refused"
    );
    assert_eq!(
        text(secret.get_version(&t1).await.expect("get")).as_deref(),
        Some("v2")
    );
    assert_eq!(
        text(secret.get_by_stage(AWSPENDING).await.expect("get")).as_deref(),
        Some("v2")
    );
    assert_eq!(
        text(secret.get_by_stage(AWSCURRENT).await.expect("get")).as_deref(),
        Some("v1")
    );

    // Finish: AWSCURRENT moves, the old version becomes AWSPREVIOUS; moving again is a no-op.
    secret.move_stage(AWSCURRENT, &t1).await.expect("move");
    secret
        .move_stage(AWSCURRENT, &t1)
        .await
        .expect("move again");
    secret.remove_stage(AWSPENDING, &t1).await.expect("remove");
    secret
        .remove_stage(AWSPENDING, &t1)
        .await
        .expect("remove again");
    let meta = secret.describe().await.expect("describe");
    assert!(meta.has_stage(&t1, AWSCURRENT), "{meta:?}");
    assert!(!meta.has_stage(&t1, AWSPENDING), "{meta:?}");
    assert!(meta.has_stage(initial_version, AWSPREVIOUS), "{meta:?}");
    assert!(!meta.has_stage(initial_version, AWSCURRENT), "{meta:?}");
    assert_eq!(
        text(secret.get_by_stage(AWSCURRENT).await.expect("get")).as_deref(),
        Some("v2")
    );
    assert_eq!(
        text(secret.get_by_stage(AWSPREVIOUS).await.expect("get")).as_deref(),
        Some("v1")
    );
    assert_eq!(
        text(secret.get_version(initial_version).await.expect("get")).as_deref(),
        Some("v1")
    );
    assert!(matches!(
        secret
            .move_stage(AWSCURRENT, "no-such-version-0000000000000000000")
            .await,
        Err(SecretError::Invalid(_))
    ));
    assert!(
        secret.remove_stage(AWSCURRENT, &t1).await.is_err(),
        "AWSCURRENT is moved, never removed"
    );

    // Rotation 2, finished by a put with AWSCURRENT: previous moves along.
    let t2 = format!("{}-rot2", crate::testing::unique("t"));
    start(t2.clone(), "v3").await;
    secret
        .put_version(&t2, "v3", &[AWSPENDING])
        .await
        .expect("put");
    let t2b = format!("{t2}-final");
    secret
        .put_version(&t2b, "v3b", &[AWSCURRENT])
        .await
        .expect("put current");
    secret.remove_stage(AWSPENDING, &t2).await.expect("remove");
    let meta = secret.describe().await.expect("describe");
    assert_eq!(
        meta.version_with(AWSCURRENT),
        Some(t2b.as_str()),
        "{meta:?}"
    );
    assert_eq!(
        meta.version_with(AWSPREVIOUS),
        Some(t1.as_str()),
        "{meta:?}"
    );
    assert_eq!(meta.version_with(AWSPENDING), None, "{meta:?}");
    assert!(!meta.has_stage(initial_version, AWSPREVIOUS), "{meta:?}");
    assert_eq!(
        text(secret.get_by_stage(AWSCURRENT).await.expect("get")).as_deref(),
        Some("v3b")
    );
    assert_eq!(
        text(secret.get_version(initial_version).await.expect("get")).as_deref(),
        Some("v1"),
        "old versions stay readable"
    );
}
