//! Single sign-on with the platform's OpenID Connect provider (SPEC 9): Latchkey is a
//! confidential relying party using the authorization code flow with PKCE (S256).
//!
//! A sign-in (or a re-authentication before a sensitive action) starts with [`Service::sso_start`],
//! which returns the provider's URL and the flow's state sealed under the master key for the
//! browser to keep in a cookie: nothing is stored until the provider sends the person back, so
//! any instance can finish what another began. [`Service::sso_finish`] opens the cookie, checks
//! `state`, exchanges the code (with the PKCE verifier and the client secret), checks the ID
//! token's signature against the provider's keys and its claims with
//! [`latchkey_core::oidc::check_id_token`], and then finds the person: by their identity at the
//! provider (issuer and `sub`), else once by a verified email (which links the identity), else
//! makes them if `create_users` is set.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_core::oidc::{Expected, IdTokenClaims, check_id_token, email_of};
use latchkey_core::{PolicyDuration, Timestamp};
use latchkey_store::{NO_PASSWORD, SsoLink, User};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::crypto::random_bytes;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::outbound::Outbound;
use crate::sessions::{NewSessionToken, SessionUser};
use crate::users::UserSpec;
use crate::{Caller, Service};

/// The `[sso]` section of the configuration.
#[derive(Debug, Clone)]
pub struct SsoSettings {
    /// The provider's issuer URL, exactly as its discovery document states it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The name on the button ("Sign in with …").
    pub display_name: String,
    pub scopes: String,
    /// The claim holding the person's address (`email`).
    pub email_claim: String,
    /// Match an existing person by email only when the provider says it verified it.
    pub require_verified_email: bool,
    /// Make a person on their first sign-in.
    pub create_users: bool,
    /// Password sign-in is offered beside single sign-on.
    pub password_login: bool,
    /// How long a confirmation at the provider lets a person do what needs their password.
    pub reauth_window: PolicyDuration,
    /// `<public_url>/sso/callback`.
    pub redirect_uri: String,
}

/// How long a person has to come back from the provider.
const FLOW_TTL_SECS: i64 = 600;

/// Keys are fetched again at most this often when a token names an unknown key.
const JWKS_REFRESH_SECS: u64 = 60;

/// What the provider publishes (OpenID Connect Discovery 1.0 §3).
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Default)]
struct Cached {
    discovery: Option<Discovery>,
    keys: Option<JwkSet>,
    keys_fetched: Option<std::time::Instant>,
}

/// The provider as this process knows it: settings, the outbound client, and its discovery
/// document and keys once fetched (on first use, so that Latchkey starts while the provider is
/// down).
pub struct Sso {
    settings: SsoSettings,
    outbound: Outbound,
    cached: Mutex<Cached>,
}

impl Sso {
    pub fn new(settings: SsoSettings, outbound: Outbound) -> Self {
        Self {
            settings,
            outbound,
            cached: Mutex::new(Cached::default()),
        }
    }

    pub fn settings(&self) -> &SsoSettings {
        &self.settings
    }

    async fn discovery(&self) -> ServiceResult<Discovery> {
        if let Some(d) = self.cached.lock().await.discovery.clone() {
            return Ok(d);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let found: Discovery = self.outbound.get_json(&url).await?;
        if found.issuer != self.settings.issuer {
            return Err(ServiceError::Unavailable(format!(
                "the provider's discovery names the issuer {:?}, not the configured {:?}",
                found.issuer, self.settings.issuer
            )));
        }
        for endpoint in [
            &found.authorization_endpoint,
            &found.token_endpoint,
            &found.jwks_uri,
        ] {
            self.outbound.check_url(endpoint)?;
        }
        self.cached.lock().await.discovery = Some(found.clone());
        Ok(found)
    }

    /// The key a token names: from the cached set, or the set fetched again (a provider that
    /// rotated its keys), at most once a minute after a fetch that worked. Sign-ins wait for
    /// a fetch in progress (bounded by the outbound timeout) rather than start their own.
    async fn key_for(&self, kid: Option<&str>, jwks_uri: &str) -> ServiceResult<DecodingKey> {
        let pick = |set: &JwkSet| -> Option<DecodingKey> {
            let jwk = match kid {
                Some(kid) => set.find(kid)?,
                None if set.keys.len() == 1 => set.keys.first()?,
                None => return None,
            };
            // A shared-secret key would let anyone holding the client secret sign tokens.
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                return None;
            }
            DecodingKey::from_jwk(jwk).ok()
        };
        let mut cached = self.cached.lock().await;
        if let Some(key) = cached.keys.as_ref().and_then(pick) {
            return Ok(key);
        }
        let recently = cached
            .keys_fetched
            .is_some_and(|t| t.elapsed() < Duration::from_secs(JWKS_REFRESH_SECS));
        if cached.keys.is_some() && recently {
            return Err(refused(
                "the ID token is signed with a key the provider does not publish",
            ));
        }
        let set: JwkSet = self.outbound.get_json(jwks_uri).await?;
        cached.keys_fetched = Some(std::time::Instant::now());
        let key = pick(&set);
        cached.keys = Some(set);
        key.ok_or_else(|| {
            refused("the ID token is signed with a key the provider does not publish")
        })
    }
}

fn refused(message: &str) -> ServiceError {
    ServiceError::client(ErrorCode::InvalidRequest, message)
}

/// Why the person is being sent to the provider.
#[derive(Debug, Clone)]
pub enum SsoPurpose {
    /// Sign in, then go to `next` (a path on this site, checked by the caller).
    Login { next: String },
    /// Confirm who they are in this session, then go back to `next`.
    Reauthenticate { session_id: String, next: String },
}

/// The flow's state, sealed into the browser's cookie between the two legs.
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    /// Set for a re-authentication: the session it is for.
    session: Option<String>,
    started_at: i64,
}

const FLOW_AAD: &str = "latchkey-sso-flow";

/// Where the browser goes, and the cookie it keeps until it comes back.
pub struct SsoStart {
    pub authorize_url: String,
    pub cookie: String,
}

/// What a finished flow did.
pub enum SsoFinish {
    SignedIn {
        session: Box<NewSessionToken>,
        next: String,
    },
    Reauthenticated {
        next: String,
    },
}

fn random_text() -> ServiceResult<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

impl Service {
    /// The provider, when single sign-on is configured.
    pub fn sso(&self) -> Option<&Sso> {
        self.sso.as_ref()
    }

    /// True when password sign-in is offered (no provider, or the operator kept it).
    pub fn password_login_enabled(&self) -> bool {
        self.sso.as_ref().is_none_or(|s| s.settings.password_login)
    }

    /// True when this person confirms who they are at the provider rather than with a
    /// password: they have none, or password sign-in is off.
    pub fn reauthenticates_at_provider(&self, user: &User) -> bool {
        self.sso.is_some() && (!self.password_login_enabled() || user.password_hash == NO_PASSWORD)
    }

    fn sso_required(&self) -> ServiceResult<&Sso> {
        self.sso
            .as_ref()
            .ok_or_else(|| ServiceError::not_found("single sign-on"))
    }

    /// Begins a sign-in or a re-authentication at the provider.
    pub async fn sso_start(&self, purpose: SsoPurpose) -> ServiceResult<SsoStart> {
        let sso = self.sso_required()?;
        let discovery = sso.discovery().await?;
        let (next, session, reauth) = match purpose {
            SsoPurpose::Login { next } => (next, None, false),
            SsoPurpose::Reauthenticate { session_id, next } => (next, Some(session_id), true),
        };
        let flow = Flow {
            state: random_text()?,
            nonce: random_text()?,
            verifier: random_text()?,
            next,
            session,
            started_at: self.now().unix_timestamp(),
        };
        let challenge = latchkey_core::oauth::pkce_s256(&flow.verifier);
        let mut url = url::Url::parse(&discovery.authorization_endpoint)
            .map_err(|e| ServiceError::Unavailable(format!("authorization endpoint: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &sso.settings.client_id)
                .append_pair("redirect_uri", &sso.settings.redirect_uri)
                .append_pair("scope", &sso.settings.scopes)
                .append_pair("state", &flow.state)
                .append_pair("nonce", &flow.nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if reauth {
                // OpenID Connect Core §3.1.2.1: sign in again, and say when in `auth_time`.
                query
                    .append_pair("max_age", "0")
                    .append_pair("prompt", "login");
            }
        }
        let plain = serde_json::to_vec(&flow)
            .map_err(|e| ServiceError::Internal(format!("sso flow: {e}")))?;
        let sealed = self.master_key.seal(&plain, FLOW_AAD)?;
        Ok(SsoStart {
            authorize_url: url.into(),
            cookie: URL_SAFE_NO_PAD.encode(sealed),
        })
    }

    /// Finishes a flow when the provider sends the person back with `code` and `state`.
    /// `session` is the browser's current session, for a re-authentication.
    pub async fn sso_finish(
        &self,
        ip: Option<std::net::IpAddr>,
        cookie: Option<&str>,
        state: &str,
        code: &str,
        session: Option<&SessionUser>,
    ) -> ServiceResult<SsoFinish> {
        let sso = self.sso_required()?;
        let now = self.now();
        // A refused answer counts against the address like a refused token: a script replaying
        // a flow cannot make Latchkey call the provider's token endpoint without end.
        if let Some(ip) = ip {
            self.limits.check_token_ip(ip, now)?;
        }
        let result = self
            .sso_finish_checked(sso, ip, cookie, state, code, session, now)
            .await;
        if let (Err(ServiceError::Client { .. }), Some(ip)) = (&result, ip) {
            self.limits.bad_token(ip, now);
        }
        result
    }

    #[expect(clippy::too_many_arguments, reason = "sso_finish's own, and the time")]
    async fn sso_finish_checked(
        &self,
        sso: &Sso,
        ip: Option<std::net::IpAddr>,
        cookie: Option<&str>,
        state: &str,
        code: &str,
        session: Option<&SessionUser>,
        now: Timestamp,
    ) -> ServiceResult<SsoFinish> {
        let start_again =
            || refused("this sign-in has expired or was started elsewhere: start again");
        let flow: Flow = cookie
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .and_then(|sealed| self.master_key.open(&sealed, FLOW_AAD).ok())
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(start_again)?;
        if flow.started_at + FLOW_TTL_SECS < now.unix_timestamp()
            || !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes()))
        {
            return Err(start_again());
        }
        let discovery = sso.discovery().await?;
        let claims = match self.redeem_code(sso, &discovery, &flow, code, now).await {
            Ok(claims) => claims,
            Err(ServiceError::Client { message, .. }) => {
                // A confirmation's refusal is in the person's log; a sign-in's is anonymous.
                let person = session
                    .filter(|s| flow.session.as_deref() == Some(s.session_id.as_str()))
                    .map(|s| &s.user);
                let caller = match person {
                    Some(user) => Caller::user(user.id.clone(), ip),
                    None => Caller::anonymous(ip),
                };
                self.record_sso_refusal(&caller, person, &message).await?;
                return Err(refused(&message));
            }
            Err(e) => return Err(e),
        };
        match flow.session {
            None => {
                let session = self.sso_sign_in(sso, ip, &claims).await?;
                Ok(SsoFinish::SignedIn {
                    session: Box::new(session),
                    next: flow.next,
                })
            }
            Some(expected_session) => {
                let current = session
                    .filter(|s| s.session_id == expected_session)
                    .ok_or_else(|| refused("this confirmation was started in another session"))?;
                let caller = Caller::user(current.user.id.clone(), ip);
                let person = self.sso_person(sso, &claims).await?;
                if person.as_ref().map(|u| &u.id) != Some(&current.user.id) {
                    self.record_sso_refusal(
                        &caller,
                        Some(&current.user),
                        "confirmed as someone else",
                    )
                    .await?;
                    return Err(refused(
                        "you confirmed as someone else at the provider than the person signed in here",
                    ));
                }
                let event = self.event(
                    &caller,
                    EventSpec {
                        action: "session.reauthenticated",
                        subject_kind: "session",
                        subject_id: &current.session_id,
                        user: Some(&current.user.id),
                        org: None,
                        outcome: "success",
                        details: Some(json!({"method": "sso"})),
                    },
                )?;
                self.store
                    .mark_session_reauthenticated(&current.session_id, now, &event)
                    .await?;
                Ok(SsoFinish::Reauthenticated { next: flow.next })
            }
        }
    }

    /// Exchanges the code and returns the ID token's claims once its signature and claims are
    /// checked. A refusal is a `Client` error whose words say why.
    async fn redeem_code(
        &self,
        sso: &Sso,
        discovery: &Discovery,
        flow: &Flow,
        code: &str,
        now: Timestamp,
    ) -> ServiceResult<IdTokenClaims> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
        }
        let answer: TokenAnswer = sso
            .outbound
            .post_form(
                &discovery.token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &sso.settings.redirect_uri),
                    ("code_verifier", &flow.verifier),
                ],
                (
                    &sso.settings.client_id,
                    sso.settings.client_secret.expose_secret(),
                ),
            )
            .await?;
        let id_token = answer
            .id_token
            .ok_or_else(|| refused("the provider sent no ID token"))?;
        let header = jsonwebtoken::decode_header(&id_token)
            .map_err(|_| refused("the provider's ID token is malformed"))?;
        let algorithms = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        if !algorithms.contains(&header.alg) {
            return Err(refused(
                "the ID token is signed with an algorithm Latchkey does not accept",
            ));
        }
        let key = sso
            .key_for(header.kid.as_deref(), &discovery.jwks_uri)
            .await?;
        // One algorithm: the key's family must match every algorithm the validation allows.
        let mut validation = Validation::new(header.alg);
        // The claims are checked below, against this flow, with our clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<IdTokenClaims>(&id_token, &key, &validation)
            .map_err(|e| {
                tracing::info!(error = %e, "an ID token was refused");
                refused("the ID token's signature or claims are not valid")
            })?
            .claims;
        let expected = Expected {
            issuer: &sso.settings.issuer,
            client_id: &sso.settings.client_id,
            nonce: &flow.nonce,
            now,
            authenticated_since: match flow.session {
                Some(_) => Some(
                    Timestamp::from_unix_timestamp(flow.started_at)
                        .map_err(|_| refused("this sign-in is malformed: start again"))?,
                ),
                None => None,
            },
        };
        check_id_token(&claims, &expected).map_err(|e| refused(&e.to_string()))?;
        Ok(claims)
    }

    /// The person an ID token names: by their identity at the provider, else (linking it) by
    /// their address. `None` when there is no such person.
    async fn sso_person(&self, sso: &Sso, claims: &IdTokenClaims) -> ServiceResult<Option<User>> {
        let issuer = &sso.settings.issuer;
        if let Some(id) = self.store.find_sso_link(issuer, &claims.sub).await? {
            return Ok(self.store.find_user(&id).await?);
        }
        let Some((email, verified)) = email_of(claims, &sso.settings.email_claim) else {
            return Ok(None);
        };
        if sso.settings.require_verified_email && !verified {
            return Ok(None);
        }
        let Ok(email) = latchkey_core::Email::parse(&email) else {
            return Ok(None);
        };
        let Some(user) = self.store.find_user_by_email(&email).await? else {
            return Ok(None);
        };
        self.link_identity(sso, &user, &claims.sub).await?;
        Ok(Some(user))
    }

    async fn link_identity(&self, sso: &Sso, user: &User, subject: &str) -> ServiceResult<()> {
        let link = SsoLink {
            issuer: sso.settings.issuer.clone(),
            subject: subject.to_owned(),
            user_id: user.id.clone(),
            created_at: self.now(),
        };
        let event = self.event(
            &Caller::user(user.id.clone(), None),
            EventSpec {
                action: "user.sso_linked",
                subject_kind: "user",
                subject_id: user.id.as_str(),
                user: Some(&user.id),
                org: None,
                outcome: "success",
                details: Some(json!({"issuer": link.issuer, "subject": link.subject})),
            },
        )?;
        match self.store.link_sso(&link, &event).await {
            Ok(()) => Ok(()),
            Err(latchkey_store::StoreError::Conflict(_)) => {
                // Two sign-ins linking the same pair at once: both are fine.
                let now_linked = self.store.find_sso_link(&link.issuer, subject).await?;
                if now_linked.as_ref() == Some(&user.id) {
                    return Ok(());
                }
                Err(refused(
                    "this account is already linked to another identity at the provider",
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn sso_sign_in(
        &self,
        sso: &Sso,
        ip: Option<std::net::IpAddr>,
        claims: &IdTokenClaims,
    ) -> ServiceResult<NewSessionToken> {
        let anonymous = Caller::anonymous(ip);
        let user = match self.sso_person(sso, claims).await? {
            Some(user) => user,
            None if sso.settings.create_users => self.sso_create(sso, &anonymous, claims).await?,
            None => {
                self.record_sso_refusal(&anonymous, None, "no such person")
                    .await?;
                return Err(ServiceError::client(
                    ErrorCode::Forbidden,
                    "there is no Latchkey account for you yet: ask an operator to add you",
                ));
            }
        };
        if user.disabled || user.deleted_at.is_some() {
            self.record_sso_refusal(&anonymous, Some(&user), "disabled")
                .await?;
            return Err(ServiceError::client(
                ErrorCode::Forbidden,
                "this account is disabled",
            ));
        }
        self.open_session(ip, &user, "session.login", Some(json!({"method": "sso"})))
            .await
    }

    async fn sso_create(
        &self,
        sso: &Sso,
        caller: &Caller,
        claims: &IdTokenClaims,
    ) -> ServiceResult<User> {
        let email = match email_of(claims, &sso.settings.email_claim) {
            Some((email, verified)) if verified || !sso.settings.require_verified_email => email,
            _ => {
                self.record_sso_refusal(caller, None, "no verified email")
                    .await?;
                return Err(ServiceError::client(
                    ErrorCode::Forbidden,
                    "the provider did not give a verified email address for you",
                ));
            }
        };
        let user = self
            .add_user(
                caller,
                UserSpec {
                    email: &email,
                    password: None,
                    is_operator: false,
                    external_id: None,
                    profile: None,
                    disabled: false,
                    provisioned: false,
                },
            )
            .await?;
        self.link_identity(sso, &user, &claims.sub).await?;
        Ok(user)
    }

    /// One audit event for a refused single sign-on, with the reason in its details.
    async fn record_sso_refusal(
        &self,
        caller: &Caller,
        user: Option<&User>,
        reason: &str,
    ) -> ServiceResult<()> {
        let event = self.event(
            caller,
            EventSpec {
                action: "session.login",
                subject_kind: "user",
                subject_id: user.map_or("unknown", |u| u.id.as_str()),
                user: user.map(|u| &u.id),
                org: None,
                outcome: "sso_refused",
                details: Some(json!({"method": "sso", "reason": reason})),
            },
        )?;
        Ok(self.store.insert_event(&event).await?)
    }

    /// The gate before a sensitive action for someone who confirms at the provider: their
    /// session confirmed within the window.
    pub(crate) async fn check_recent_reauth(
        &self,
        caller: &Caller,
        user: &User,
        action: &str,
        org: Option<&latchkey_core::OrgId>,
    ) -> ServiceResult<()> {
        let window = self
            .sso
            .as_ref()
            .map_or(PolicyDuration::ZERO, |s| s.settings.reauth_window);
        let fresh = caller
            .reauth_at
            .is_some_and(|at| at + window.to_time() > self.now());
        if fresh {
            return Ok(());
        }
        let event = self.event(
            caller,
            EventSpec {
                action,
                subject_kind: "user",
                subject_id: user.id.as_str(),
                user: Some(&user.id),
                org,
                outcome: "reauthentication_required",
                details: None,
            },
        )?;
        self.store.insert_event(&event).await?;
        Err(ServiceError::client(
            ErrorCode::ReauthenticationRequired,
            "confirm who you are at your sign-in provider first (the console's \"Confirm\" button), then try again",
        ))
    }
}
