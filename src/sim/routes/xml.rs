//! The Meetings XML API: `POST /WBXService/XMLService` with `AuthenticateUser`,
//! `GetSite`, `LstMeetingType`, `GetUser` and `SetUser`, over the same sites and
//! hosts' settings as the REST routes.
//!
//! Every answer is HTTP 200 (an injected 5xx aside), its `result` SUCCESS or
//! FAILURE with `reason`, `gsbStatus` and `exceptionID`. Requests are read by
//! local names with quick-xml. The exception ids chosen where Cisco documents
//! none (UNVERIFIED, simulator choices): a bad access token, or an unknown,
//! expired or foreign session ticket, answer 030002 "Incorrect user or
//! password" (the ticket stands in for the password); an unknown site or user
//! 000015 "Sorry, no record found"; anything else wrong in a request 999999
//! with the reason. Documented ones: 000000 for a request without `xmlns:xsi`,
//! 000045 for the rate answer. `GetUser` answers are declared and encoded
//! ISO-8859-1 (characters beyond it as character references), the others
//! UTF-8. `GetSite` input modes are written `Text Field`, `Drop Down List`,
//! `Editable Drop Down List` and `Host Profile Drop Down List` (Cisco does
//! not document the strings). `LstMeetingType` answers at most 3 records a
//! page whatever `maximumNum` asks, so a client must page. Like the REST
//! gate, a request is worked on to the end even if its client leaves.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::sim::model::sites::{SettingsRefusal, SimSite};
use crate::sim::model::state::SimState;
use crate::sim::server::ConnectionKill;
use crate::sim::ADMIN_EMAIL;

const NS_SERV: &str = "http://www.webex.com/schemas/2002/06/service";
const NS_COM: &str = "http://www.webex.com/schemas/2002/06/common";
const NS_USE: &str = "http://www.webex.com/schemas/2002/06/service/user";
const NS_SITE: &str = "http://www.webex.com/schemas/2002/06/service/site";
const NS_MTGTYPE: &str = "http://www.webex.com/schemas/2002/06/service/meetingtype";

/// A request element: local name, attributes (qualified names), text, children.
#[derive(Debug, Default)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<El>,
}

impl El {
    fn child(&self, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.name == name)
    }
    fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

fn local(name: &str) -> String {
    name.rsplit(':').next().unwrap_or(name).to_owned()
}

fn element(e: &quick_xml::events::BytesStart<'_>) -> Result<El, String> {
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?;
        attrs.push((a.key.as_ref().to_owned(), value.into_owned()));
    }
    Ok(El {
        name: local(e.name().as_ref()),
        attrs,
        ..El::default()
    })
}

/// Parses a request document.
fn parse(xml: &str) -> Result<El, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack = vec![El::default()];
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => stack.push(element(&e)?),
            Event::Empty(e) => {
                let el = element(&e)?;
                stack.last_mut().ok_or("no root")?.children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced")?;
                stack.last_mut().ok_or("unbalanced")?.children.push(el);
            }
            Event::Text(t) => stack
                .last_mut()
                .ok_or("no root")?
                .text
                .push_str(&t.xml10_content()),
            Event::CData(t) => stack
                .last_mut()
                .ok_or("no root")?
                .text
                .push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .ok_or("unknown entity")?
                        .to_owned(),
                };
                stack.last_mut().ok_or("no root")?.text.push_str(&text);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut root = stack.pop().ok_or("no document")?;
    if !stack.is_empty() || root.children.len() != 1 {
        return Err("not one root element".into());
    }
    Ok(root.children.pop().expect("one"))
}

/// A FAILURE: exception id and reason.
struct Failure(&'static str, String);

type XmlWriter = Writer<Cursor<Vec<u8>>>;
type Body = Box<dyn FnOnce(&mut XmlWriter) -> std::io::Result<()> + Send>;

/// A SUCCESS body: its `xsi:type`, extra namespace declarations, content.
struct Success {
    kind: &'static str,
    namespaces: &'static [(&'static str, &'static str)],
    content: Body,
    latin1: bool,
}

fn text(w: &mut XmlWriter, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

/// The answer document.
fn document(answer: Result<Success, Failure>) -> (Vec<u8>, bool) {
    let latin1 = matches!(&answer, Ok(s) if s.latin1);
    let mut w = Writer::new(Cursor::new(Vec::new()));
    let written: std::io::Result<()> = (|| {
        let encoding = if latin1 { "ISO-8859-1" } else { "UTF-8" };
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some(encoding), None)))?;
        let mut root = w
            .create_element("serv:message")
            .with_attribute(("xmlns:serv", NS_SERV))
            .with_attribute(("xmlns:com", NS_COM))
            .with_attribute(("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"));
        if let Ok(s) = &answer {
            for ns in s.namespaces {
                root = root.with_attribute(*ns);
            }
        }
        root.write_inner_content(|w| {
            w.create_element("serv:header").write_inner_content(|w| {
                w.create_element("serv:response")
                    .write_inner_content(|w| match &answer {
                        Ok(_) => {
                            text(w, "serv:result", "SUCCESS")?;
                            text(w, "serv:gsbStatus", "PRIMARY")
                        }
                        Err(Failure(id, reason)) => {
                            text(w, "serv:result", "FAILURE")?;
                            text(w, "serv:reason", reason)?;
                            text(w, "serv:gsbStatus", "PRIMARY")?;
                            text(w, "serv:exceptionID", id)
                        }
                    })?;
                Ok(())
            })?;
            w.create_element("serv:body")
                .write_inner_content(|w| match answer {
                    Ok(s) => {
                        w.create_element("serv:bodyContent")
                            .with_attribute(("xsi:type", s.kind))
                            .write_inner_content(s.content)?;
                        Ok(())
                    }
                    Err(_) => {
                        w.create_element("serv:bodyContent").write_empty()?;
                        Ok(())
                    }
                })?;
            Ok(())
        })?;
        Ok(())
    })();
    written.expect("writing to memory");
    let utf8 = String::from_utf8(w.into_inner().into_inner()).expect("UTF-8");
    if !latin1 {
        return (utf8.into_bytes(), false);
    }
    let mut bytes = Vec::with_capacity(utf8.len());
    for c in utf8.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => bytes.push(b),
            Err(_) => bytes.extend_from_slice(format!("&#{};", u32::from(c)).as_bytes()),
        }
    }
    (bytes, true)
}

fn invalid(reason: impl Into<String>) -> Failure {
    Failure("999999", reason.into())
}

fn no_record() -> Failure {
    Failure("000015", "Sorry, no record found".into())
}

fn bad_credentials() -> Failure {
    Failure("030002", "Incorrect user or password".into())
}

impl From<SettingsRefusal> for Failure {
    fn from(r: SettingsRefusal) -> Failure {
        match r {
            SettingsRefusal::UnknownSite(_) | SettingsRefusal::NotAHost(_) => no_record(),
            SettingsRefusal::Invalid(problems) => invalid(problems.join(" ")),
            SettingsRefusal::Mapped(why) => invalid(why),
        }
    }
}

/// `POST /WBXService/XMLService`.
pub(crate) async fn service(
    State(sim): State<Arc<SimState>>,
    Extension(kill): Extension<ConnectionKill>,
    body: Bytes,
) -> Response {
    sim.record(|stats| stats.xml_requests += 1);
    // As the gate does for REST: the request is worked on to the end in a
    // task of its own, whatever happens to the client (a `SetUser` whose
    // client gave up or died during the latency still lands).
    let work = tokio::spawn(async move {
        if !sim.config.latency.is_zero() {
            tokio::time::sleep(sim.config.latency).await;
        }
        if sim.chance(sim.config.fail_rate) {
            sim.record(|stats| stats.injected_failures += 1);
            return Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "<html>Service Unavailable</html>",
                )
                    .into_response(),
            );
        }
        let (answer, wrote) = handle(&sim, &body);
        if wrote && sim.chance(sim.config.settings_drop_rate) {
            sim.record(|stats| stats.dropped += 1);
            kill.trigger();
            return None;
        }
        let (bytes, latin1) = document(answer);
        let content_type = if latin1 {
            "text/xml; charset=ISO-8859-1"
        } else {
            "text/xml; charset=UTF-8"
        };
        Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type)],
                bytes,
            )
                .into_response(),
        )
    });
    match work.await {
        Ok(Some(response)) => response,
        // The connection is dropped: no answer at all.
        Ok(None) => std::future::pending().await,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Carries out one request; also says whether it changed a host's settings.
fn handle(sim: &SimState, body: &[u8]) -> (Result<Success, Failure>, bool) {
    let forward = || Failure("000000", "Fail to forward request:null".into());
    let Ok(text) = std::str::from_utf8(body) else {
        return (Err(forward()), false);
    };
    let Ok(doc) = parse(text) else {
        return (Err(forward()), false);
    };
    // Without `xmlns:xsi` the `xsi:type` means nothing (cisco-ie#1).
    if !doc.attrs.iter().any(|(k, _)| k == "xmlns:xsi") {
        return (Err(forward()), false);
    }
    let (Some(context), Some(content)) = (
        doc.child("header").and_then(|h| h.child("securityContext")),
        doc.child("body").and_then(|b| b.child("bodyContent")),
    ) else {
        return (
            Err(invalid(
                "header/securityContext and body/bodyContent are required",
            )),
            false,
        );
    };
    let op = content
        .attrs
        .iter()
        .find(|(k, _)| k == "xsi:type")
        .map(|(_, v)| v.rsplit('.').next().unwrap_or("").to_owned())
        .unwrap_or_default();
    // The header's `webExID` (capital D); `webExId` there is not it.
    let (Some(caller), Some(site_name)) = (context.text_of("webExID"), context.text_of("siteName"))
    else {
        return (Err(bad_credentials()), false);
    };
    let Some(site) = sim.settings().site_named(site_name).cloned() else {
        return (Err(no_record()), false);
    };
    let now = Instant::now();
    if let Err(refusal) = sim.xml().admit(
        caller,
        sim.config.xml_rate_limit,
        sim.config.early_grace,
        now,
    ) {
        sim.record(|stats| {
            stats.xml_rate_limited += 1;
            stats.xml_early_requests += u64::from(refusal.early);
        });
        return (
            Err(Failure("000045", "API Rate Limit Reached".into())),
            false,
        );
    }
    if op == "AuthenticateUser" {
        return (authenticate(sim, &site, caller, content, now), false);
    }
    let ticket = context.text_of("sessionTicket").unwrap_or("");
    if !sim.xml().accepts(ticket, &site.url, caller, now) {
        sim.record(|stats| stats.xml_ticket_rejections += 1);
        return (Err(bad_credentials()), false);
    }
    match op.as_str() {
        "GetSite" => (Ok(get_site(&site)), false),
        "LstMeetingType" => (lst_meeting_type(&site, content), false),
        "GetUser" => (get_user(sim, &site, content), false),
        "SetUser" => match set_user(sim, &site, content) {
            Ok(s) => (Ok(s), true),
            Err(f) => (Err(f), false),
        },
        other => (
            Err(invalid(format!("Unsupported operation {other}"))),
            false,
        ),
    }
}

fn authenticate(
    sim: &SimState,
    site: &SimSite,
    caller: &str,
    content: &El,
    now: Instant,
) -> Result<Success, Failure> {
    let token = content.text_of("accessToken").unwrap_or("");
    let scoped = sim
        .config
        .granted_scopes
        .split_whitespace()
        .any(|s| s == "spark:all");
    if !scoped || !caller.eq_ignore_ascii_case(ADMIN_EMAIL) || !sim.tokens().authorize(token, now) {
        return Err(bad_credentials());
    }
    let ttl = sim.config.xml_ticket_ttl;
    let ticket = sim.xml().issue(&site.url, caller, ttl, now);
    sim.record(|stats| stats.xml_tickets += 1);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    Ok(Success {
        kind: "use:authenticateUserResponse",
        namespaces: &[("xmlns:use", NS_USE)],
        content: Box::new(move |w| {
            text(w, "use:sessionTicket", &ticket)?;
            text(w, "use:createTime", &created)?;
            text(w, "use:timeToLive", &ttl.as_secs().to_string())
        }),
        latin1: false,
    })
}

fn xml_input_mode(mode: &str) -> &'static str {
    match mode {
        "select" => "Drop Down List",
        "editableSelect" => "Editable Drop Down List",
        "hostProfileSelect" => "Host Profile Drop Down List",
        _ => "Text Field",
    }
}

fn get_site(site: &SimSite) -> Success {
    let site = site.clone();
    Success {
        kind: "ns1:getSiteResponse",
        namespaces: &[("xmlns:ns1", NS_SITE)],
        content: Box::new(move |w| {
            w.create_element("ns1:siteInstance")
                .write_inner_content(|w| {
                    w.create_element("ns1:metaData").write_inner_content(|w| {
                        text(w, "ns1:siteName", site.name())?;
                        for t in &site.session_types {
                            w.create_element("ns1:meetingTypes")
                                .write_inner_content(|w| {
                                    text(w, "ns1:meetingTypeID", &t.id)?;
                                    text(w, "ns1:meetingTypeName", &t.short_name)?;
                                    text(w, "ns1:hideInScheduler", "false")
                                })?;
                        }
                        Ok(())
                    })?;
                    if site.tracking_codes.is_empty() {
                        w.create_element("ns1:trackingCodes").write_empty()?;
                        return Ok(());
                    }
                    w.create_element("ns1:trackingCodes")
                        .write_inner_content(|w| {
                            for c in &site.tracking_codes {
                                w.create_element("ns1:trackingCode")
                                    .write_inner_content(|w| {
                                        text(w, "ns1:index", &c.id)?;
                                        text(w, "ns1:name", &c.name)?;
                                        text(w, "ns1:inputMode", xml_input_mode(&c.input_mode))?;
                                        text(w, "ns1:hostProfile", "optional")?;
                                        for (i, v) in c.options.iter().enumerate() {
                                            w.create_element("ns1:listValue").write_inner_content(
                                                |w| {
                                                    text(w, "ns1:index", &(i + 1).to_string())?;
                                                    text(w, "ns1:value", v)?;
                                                    text(w, "ns1:active", "true")
                                                },
                                            )?;
                                        }
                                        Ok(())
                                    })?;
                            }
                            Ok(())
                        })?;
                    Ok(())
                })?;
            Ok(())
        }),
        latin1: false,
    }
}

/// The most meeting types one `LstMeetingType` answer lists (a simulator
/// choice, small so that paging is exercised).
const PAGE_CAP: usize = 3;

fn lst_meeting_type(site: &SimSite, content: &El) -> Result<Success, Failure> {
    let control = content.child("listControl");
    let number = |name: &str, default: usize| {
        control
            .and_then(|c| c.text_of(name))
            .map(|t| {
                t.parse::<usize>()
                    .map_err(|_| invalid(format!("{name} is not a number")))
            })
            .unwrap_or(Ok(default))
    };
    let start = number("startFrom", 1)?.max(1);
    // At most PAGE_CAP a page, whatever is asked: a client must follow
    // `startFrom` (the default sites have more session types than that).
    let max = number("maximumNum", 10)?.clamp(1, PAGE_CAP);
    let total = site.session_types.len();
    let page: Vec<_> = site
        .session_types
        .iter()
        .skip(start - 1)
        .take(max)
        .cloned()
        .collect();
    Ok(Success {
        kind: "mtgtype:lstMeetingTypeResponse",
        namespaces: &[("xmlns:mtgtype", NS_MTGTYPE)],
        content: Box::new(move |w| {
            w.create_element("mtgtype:matchingRecords")
                .write_inner_content(|w| {
                    text(w, "serv:total", &total.to_string())?;
                    text(w, "serv:returned", &page.len().to_string())?;
                    text(w, "serv:startFrom", &start.to_string())
                })?;
            for t in &page {
                w.create_element("mtgtype:meetingType")
                    .write_inner_content(|w| {
                        text(w, "mtgtype:productCodePrefix", &t.short_name)?;
                        text(w, "mtgtype:active", "ACTIVATED")?;
                        text(w, "mtgtype:name", &t.name)?;
                        text(w, "mtgtype:displayName", &t.name)?;
                        text(w, "mtgtype:meetingTypeID", &t.id)?;
                        w.create_element("mtgtype:serviceTypes")
                            .write_inner_content(|w| {
                                text(
                                    w,
                                    "mtgtype:serviceType",
                                    if t.kind == "TrainCenter" {
                                        "TrainingCenter"
                                    } else {
                                        "MeetingCenter"
                                    },
                                )
                            })?;
                        Ok(())
                    })?;
            }
            Ok(())
        }),
        latin1: false,
    })
}

/// The host a GetUser/SetUser body names (`webExId`, small d).
fn host_of(sim: &SimState, site: &SimSite, content: &El) -> Result<(String, Vec<String>), Failure> {
    let email = content
        .text_of("webExId")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| invalid("webExId is required"))?;
    let (_, sites) = sim.host(email).ok_or_else(no_record)?;
    if !sites.iter().any(|s| s == &site.url) {
        return Err(no_record());
    }
    Ok((email.to_owned(), sites))
}

fn get_user(sim: &SimState, site: &SimSite, content: &El) -> Result<Success, Failure> {
    let (email, sites) = host_of(sim, site, content)?;
    let host = sim.settings().get(&email, &site.url, &sites)?.clone();
    let codes: Vec<(String, String)> = site
        .tracking_codes
        .iter()
        .filter_map(|c| {
            host.tracking
                .get(&c.name)
                .map(|v| (c.id.clone(), v.clone()))
        })
        .collect();
    Ok(Success {
        kind: "use:getUserResponse",
        namespaces: &[("xmlns:use", NS_USE)],
        content: Box::new(move |w| {
            text(w, "use:firstName", "")?;
            text(w, "use:lastName", "")?;
            text(w, "use:categoryId", "4")?;
            text(w, "use:webExId", &email)?;
            text(w, "use:email", &email)?;
            w.create_element("use:meetingTypes")
                .write_inner_content(|w| {
                    for id in &host.session_types {
                        text(w, "use:meetingType", id)?;
                    }
                    Ok(())
                })?;
            text(w, "use:timeZoneID", "4")?;
            if codes.is_empty() {
                w.create_element("use:tracking").write_empty()?;
            } else {
                w.create_element("use:tracking").write_inner_content(|w| {
                    for (index, value) in &codes {
                        text(w, &format!("com:trackingCode{index}"), value)?;
                    }
                    Ok(())
                })?;
            }
            text(w, "use:active", "ACTIVATED")
        }),
        latin1: true,
    })
}

fn set_user(sim: &SimState, site: &SimSite, content: &El) -> Result<Success, Failure> {
    if let Some(other) = content
        .children
        .iter()
        .find(|c| !matches!(c.name.as_str(), "webExId" | "meetingTypes" | "tracking"))
    {
        return Err(invalid(format!(
            "On a Control Hub managed site SetUser cannot change {} here",
            other.name
        )));
    }
    let (email, sites) = host_of(sim, site, content)?;
    let mut changed = false;
    let mut wrote_types = false;
    if let Some(types) = content.child("meetingTypes") {
        let ids: Vec<String> = types
            .children
            .iter()
            .filter(|c| c.name == "meetingType")
            .map(|c| c.text.trim().to_owned())
            .collect();
        changed |= sim
            .settings()
            .set_session_types(&email, &site.url, &sites, &ids)?;
        wrote_types = true;
    }
    let mut wrote_codes = false;
    if let Some(tracking) = content.child("tracking") {
        let mut codes = Vec::new();
        for c in &tracking.children {
            let index = c.name.strip_prefix("trackingCode").unwrap_or("");
            let code = site
                .tracking_codes
                .iter()
                .find(|t| t.id == index)
                .ok_or_else(|| {
                    invalid(format!("{} is not a tracking code of this site", c.name))
                })?;
            codes.push((code.name.clone(), c.text.trim().to_owned()));
        }
        changed |= sim
            .settings()
            .set_tracking(&email, &site.url, &sites, &codes, false)?;
        wrote_codes = true;
    }
    sim.record(|stats| {
        stats.xml_set_users += 1;
        stats.session_type_updates += u64::from(wrote_types);
        stats.tracking_code_updates += u64::from(wrote_codes);
        stats.settings_noop_writes += u64::from(!changed);
    });
    Ok(Success {
        kind: "use:setUserResponse",
        namespaces: &[("xmlns:use", NS_USE)],
        content: Box::new(|_| Ok(())),
        latin1: false,
    })
}
