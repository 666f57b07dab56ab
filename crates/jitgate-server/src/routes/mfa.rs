//! Second factors: status, step-up, TOTP, recovery codes, passkeys.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/mfa", get(mfa_status))
        .route("/mfa/verify", post(mfa_verify))
        .route("/mfa/totp", post(totp_enrol).delete(totp_remove))
        .route("/mfa/totp/confirm", post(totp_confirm))
        .route("/mfa/recovery-codes", post(recovery_codes))
        .route("/mfa/webauthn/challenge", post(webauthn_challenge))
        .route("/mfa/webauthn/register", post(passkey_start))
        .route("/mfa/webauthn/register/finish", post(passkey_finish))
        .route("/mfa/webauthn/{id}", delete(passkey_remove))
}

#[utoipa::path(
    get,
    path = "/api/v1/mfa",
    tag = "mfa",
    summary = "This person's second factors and how fresh the session's last one is",
    responses((status = 200, description = "Done", body = jitgate_api::MfaStatus), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn mfa_status(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::MfaStatus> {
    Ok(Json(s.mfa().mfa_status(&caller).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/mfa/verify",
    tag = "mfa",
    summary = "Step up: prove a second factor now; it counts for the freshness window",
    request_body = MfaProof,
    responses((status = 200, description = "Done", body = jitgate_api::SteppedUp), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn mfa_verify(State(s): State<AppState>, caller: Caller, Json(body): Json<MfaProof>) -> R<jitgate_api::SteppedUp> {
    Ok(Json(s.mfa().step_up_now(&caller, &body).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/mfa/totp",
    tag = "mfa",
    summary = "Start a TOTP enrolment: secret, otpauth URI and QR code (SVG)",
    responses((status = 201, description = "Created", body = jitgate_api::TotpEnrolment), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn totp_enrol(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<jitgate_api::TotpEnrolment>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.enrolment().totp_start(&caller).await?)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/mfa/totp",
    tag = "mfa",
    summary = "Remove the TOTP factor (needs a fresh second factor)",
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn totp_remove(State(s): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    s.enrolment().totp_remove(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/mfa/totp/confirm",
    tag = "mfa",
    summary = "Activate a TOTP enrolment with its first code; the first factor brings recovery codes",
    request_body = CodeBody,
    responses((status = 200, description = "Done", body = jitgate_api::FactorAdded), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn totp_confirm(State(s): State<AppState>, caller: Caller, Json(body): Json<CodeBody>) -> R<jitgate_api::FactorAdded> {
    Ok(Json(s.enrolment().totp_confirm(&caller, &body.code).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/mfa/recovery-codes",
    tag = "mfa",
    summary = "A new set of ten recovery codes, voiding the old set (needs a fresh second factor)",
    responses((status = 200, description = "Done", body = jitgate_api::RecoveryCodes), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn recovery_codes(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::RecoveryCodes> {
    Ok(Json(s.enrolment().recovery_codes(&caller).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/mfa/webauthn/challenge",
    tag = "mfa",
    summary = "A WebAuthn challenge for a step-up or an action",
    responses((status = 200, description = "Done", body = jitgate_api::WebauthnChallenge), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn webauthn_challenge(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::WebauthnChallenge> {
    Ok(Json(s.mfa().webauthn_challenge(&caller.user.name).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/mfa/webauthn/register",
    tag = "mfa",
    summary = "Start registering a passkey or security key",
    request_body = PasskeyStartBody,
    responses((status = 200, description = "Done", body = jitgate_api::WebauthnChallenge), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn passkey_start(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<PasskeyStartBody>,
) -> R<jitgate_api::WebauthnChallenge> {
    Ok(Json(s.enrolment().passkey_start(&caller, &body.name).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/mfa/webauthn/register/finish",
    tag = "mfa",
    summary = "Finish registering a passkey with the authenticator's answer",
    request_body = PasskeyFinishBody,
    responses((status = 201, description = "Created", body = jitgate_api::FactorAdded), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn passkey_finish(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<PasskeyFinishBody>,
) -> Result<(StatusCode, Json<jitgate_api::FactorAdded>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.enrolment().passkey_finish(&caller, &body).await?)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/mfa/webauthn/{id}",
    tag = "mfa",
    summary = "Remove a passkey (needs a fresh second factor)",
    params(("id" = String, Path, description = "the passkey's id")),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn passkey_remove(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> Result<StatusCode, ApiError> {
    s.enrolment().passkey_remove(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
