//! `mfa`: login latency with and without a TOTP code over HTTP, and the in-process cost of
//! each credential check.

use crate::*;

pub(crate) fn per_call_us(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

pub(crate) fn summary(name: &str, mut lat: Vec<f64>) -> String {
    lat.sort_by(f64::total_cmp);
    format!(
        "{name}_p50_ms={:.2} {name}_p99_ms={:.2}",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0)
    )
}

/// Login latency with and without a TOTP code, sequential (one login at a time, as people log
/// in). The server runs on a manual clock that moves one TOTP step before each coded login,
/// since a step is accepted once per user.
pub(crate) async fn mfa(backend: &str, logins: usize) -> Result<()> {
    use jitgate_auth::totp;
    use jitgate_server::clock::ManualClock;
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(SystemClock.now());
    let Bench { anon, stop, server, .. } = Bench::start(backend, dir.path(), Some(Arc::new(clock.clone()))).await?;
    let secs = |c: &ManualClock| u64::try_from(c.now().as_millis() / 1000).unwrap_or(0);
    let bob = anon.with_token(&anon.login("bob", PASSWORD).await?.token);
    let enrolment = bob.totp_enrol().await?;
    let secret = enrolment.secret.expose().to_owned();
    bob.totp_confirm(&totp::code_for_secret(&secret, secs(&clock))?).await?;

    let (mut password_only, mut with_totp) = (Vec::new(), Vec::new());
    for _ in 0..logins {
        let t = Instant::now();
        anon.login("alice", PASSWORD).await?;
        password_only.push(t.elapsed().as_secs_f64() * 1000.0);
        clock.advance(Duration::from_secs(30));
        let proof = jitgate_api::MfaProof::otp(&totp::code_for_secret(&secret, secs(&clock))?);
        let t = Instant::now();
        anon.login_with("bob", PASSWORD, proof).await?;
        with_totp.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "mfa backend={backend} logins={logins} {} {}",
        summary("login_password", password_only),
        summary("login_password_totp", with_totp)
    );

    // The checks themselves, in process.
    let hash = jitgate_auth::hash_password(&secrecy::SecretString::from(PASSWORD.to_owned())).map_err(anyhow::Error::msg)?;
    let pw = secrecy::SecretString::from(PASSWORD.to_owned());
    let argon2_us = per_call_us(20, || {
        std::hint::black_box(jitgate_auth::verify_password(Some(&hash), &pw));
    });
    let seed = totp::new_seed();
    let params = totp::TotpParams::default();
    let now = secs(&clock);
    let good = totp::code_at(&seed, params, now)?;
    let totp_ok_us = per_call_us(100_000, || {
        std::hint::black_box(totp::check(&seed, params, &good, now, None).ok());
    });
    let totp_wrong_us = per_call_us(100_000, || {
        std::hint::black_box(totp::check(&seed, params, "000000", now, None).ok());
    });
    let ring = jitgate_auth::secret_box::KeyRing::parse(&jitgate_auth::secret_box::KeyRing::generate_text()).map_err(anyhow::Error::msg)?;
    let sealed = ring.seal(&seed, "bob");
    let open_us = per_call_us(100_000, || {
        std::hint::black_box(ring.open(&sealed, "bob").ok());
    });
    let recovery_us = per_call_us(100_000, || {
        std::hint::black_box(jitgate_auth::recovery::recovery_code_hash("abcd-efgh-jkmn-pqrs"));
    });
    println!(
        "credential_checks argon2id_verify_us={argon2_us:.0} totp_check_match_us={totp_ok_us:.2} totp_check_wrong_us={totp_wrong_us:.2} seed_open_us={open_us:.2} recovery_hash_us={recovery_us:.2}"
    );
    stop.stop();
    server.await??;
    Ok(())
}
