//! Console sessions, kept in the server's memory only: a random id in an HttpOnly
//! cookie names the temporary credentials the session signs with, and a second
//! random value, readable by the page, guards against cross-site requests.

use std::collections::HashMap;
use std::sync::Mutex;

use nimbus_auth::sigv4::Keys;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

pub const COOKIE: &str = "nimbus-console";
/// Sessions and login links are dropped oldest first beyond these counts.
const MAX_SESSIONS: usize = 256;
const MAX_LINKS: usize = 64;
/// How long a login link printed by `nimbus console` may wait to be opened.
pub const LINK_LIFETIME: Duration = Duration::minutes(5);

#[derive(Debug, Clone)]
pub struct Session {
    pub keys: Keys,
    pub principal: String,
    pub account: String,
    pub csrf: String,
    pub expires: OffsetDateTime,
}

impl Session {
    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    /// Sessions made but not yet claimed, by one-time link token, with the link's expiry.
    links: HashMap<String, (Session, OffsetDateTime)>,
}

/// 32 random bytes in hex: session ids, link tokens and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the kernel gives random bytes");
    hex::encode(bytes)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `session`; its id, for the cookie.
    pub fn open(&self, session: Session) -> String {
        let id = random_token();
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        inner.sessions.retain(|_, s| s.expires > now);
        evict_oldest(&mut inner.sessions, MAX_SESSIONS, |s| s.expires);
        inner.sessions.insert(id.clone(), session);
        id
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let mut inner = self.lock();
        let session = inner.sessions.get(id)?;
        if session.expires <= OffsetDateTime::now_utc() {
            inner.sessions.remove(id);
            return None;
        }
        Some(session.clone())
    }

    pub fn close(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    /// Keeps `session` until a login link carrying the returned token claims it.
    pub fn offer(&self, session: Session) -> String {
        let token = random_token();
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        inner.links.retain(|_, (_, expires)| *expires > now);
        evict_oldest(&mut inner.links, MAX_LINKS, |(_, expires)| *expires);
        inner
            .links
            .insert(token.clone(), (session, now + LINK_LIFETIME));
        token
    }

    /// The session a link offered, once: a second use finds nothing.
    pub fn claim(&self, token: &str) -> Option<Session> {
        let (session, expires) = self.lock().links.remove(token)?;
        (expires > OffsetDateTime::now_utc()).then_some(session)
    }
}

/// Makes room for one more entry in `map`, dropping those that end soonest.
fn evict_oldest<V>(
    map: &mut HashMap<String, V>,
    limit: usize,
    ends: impl Fn(&V) -> OffsetDateTime,
) {
    while map.len() >= limit {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, value)| ends(value))
            .map(|(key, _)| key.clone())
        else {
            return;
        };
        map.remove(&oldest);
    }
}

/// The value of the cookie named [`COOKIE`] in a request's `Cookie` headers.
pub fn cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires: OffsetDateTime) -> Session {
        Session {
            keys: Keys {
                access_key_id: "ASIA".into(),
                secret: "s".into(),
                session_token: Some("t".into()),
            },
            principal: "arn:aws:iam::000000000000:root".into(),
            account: "000000000000".into(),
            csrf: random_token(),
            expires,
        }
    }

    #[test]
    fn a_login_link_opens_one_session_once() {
        let sessions = Sessions::default();
        let token = sessions.offer(session(OffsetDateTime::now_utc() + Duration::hours(1)));
        assert!(sessions.claim(&token).is_some());
        assert!(sessions.claim(&token).is_none());
        assert!(sessions.claim("made-up").is_none());
    }

    #[test]
    fn expired_sessions_are_gone() {
        let sessions = Sessions::default();
        let id = sessions.open(session(OffsetDateTime::now_utc() - Duration::seconds(1)));
        assert!(sessions.get(&id).is_none());
        let id = sessions.open(session(OffsetDateTime::now_utc() + Duration::hours(1)));
        assert!(sessions.get(&id).is_some());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let now = OffsetDateTime::now_utc();
        let first = sessions.open(session(now + Duration::minutes(1)));
        for n in 0..MAX_SESSIONS {
            sessions.open(session(
                now + Duration::hours(1) + Duration::seconds(n as i64),
            ));
        }
        assert!(sessions.get(&first).is_none());
        assert_eq!(sessions.lock().sessions.len(), MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "a=1; nimbus-console=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers), Some("abc"));
        assert_eq!(cookie(&http::HeaderMap::new()), None);
    }
}
