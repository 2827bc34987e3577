//! The Meetings XML API (`POST …/WBXService/XMLService`), for the calls the
//! user-settings kind makes: `AuthenticateUser` (an OAuth access token for
//! a session ticket), `GetSite`, `LstMeetingType`, `GetUser`, `SetUser`.
//!
//! Requests are written with quick-xml's writer (every value escaped; no
//! user data is ever pasted into XML text). Answers are decoded by the
//! encoding their declaration names (Webex sends UTF-8 and ISO-8859-1) and
//! read by local names, whatever the namespace prefixes. The API answers
//! HTTP 200 even when a call fails: `result` FAILURE becomes
//! [`ApiError::Xml`] with its `exceptionID`, classified like REST errors
//! (the rate answer 000045 is "rate limited", a refused ticket or token
//! "unauthorized"), so a failure is never taken for a success.

use std::io::Cursor;
use std::time::Duration;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use secrecy::{ExposeSecret, SecretString};

use super::*;

/// The XML API's documented address.
pub const DEFAULT_XML_URL: &str = "https://api.webex.com/WBXService/XMLService";

/// How long every worker waits after the XML API's rate answer (000045,
/// which carries no Retry-After): Cisco documents that a call refused so
/// "can still be submitted 60 seconds later".
pub const DEFAULT_XML_RATE_PAUSE: Duration = Duration::from_secs(60);

const NS_SERV: &str = "http://www.webex.com/schemas/2002/06/service";
const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The rate answer.
pub const XML_RATE_LIMITED: &str = "000045";
/// "Incorrect user or password": a token or session ticket not accepted.
pub const XML_BAD_CREDENTIALS: &str = "030002";
/// "Authentication Server can't generate a valid session ticket".
pub const XML_NO_TICKET: &str = "030048";
/// "ASService not responding": transient.
pub const XML_NOT_RESPONDING: &str = "000035";

/// Where the XML API is, and how long its rate answer pauses everybody.
#[derive(Clone, Debug)]
pub struct XmlEndpoint {
    pub url: Url,
    pub rate_pause: Duration,
}

/// Who calls: the site (its `siteName`), the admin's `webExID`, the ticket.
pub struct SecurityContext<'a> {
    pub site_name: &'a str,
    pub web_ex_id: &'a str,
    pub ticket: &'a SecretString,
}

/// An `AuthenticateUser` answer.
pub struct XmlTicket {
    pub ticket: SecretString,
    /// How long it is valid from its creation.
    pub time_to_live: Duration,
}

/// A meeting type (`LstMeetingType`), the XML name of a session type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlMeetingType {
    pub id: String,
    /// `productCodePrefix` (the REST short name, `PRO`).
    pub prefix: Option<String>,
    pub name: Option<String>,
    pub active: bool,
}

/// A site's tracking code (`GetSite`): addressed by index in `SetUser`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlTrackingCode {
    pub index: u32,
    pub name: String,
    pub input_mode: String,
    /// The list values, with whether each is active.
    pub values: Vec<(String, bool)>,
}

/// What `GetSite` says about the settings this tool changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XmlSite {
    /// `metaData/meetingTypes`: (id, name).
    pub meeting_types: Vec<(String, String)>,
    pub tracking_codes: Vec<XmlTrackingCode>,
}

/// A user's settings (`GetUser`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XmlUser {
    pub meeting_types: Vec<String>,
    /// (index, value) of every tracking code with a value.
    pub tracking: Vec<(u32, String)>,
}

/// An element of an answer, by its local name (prefixes dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    /// Every child called `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    /// The trimmed text of the first child called `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
    /// The descendant along `path`.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, p| n.child(p))
    }
}

/// An answer's body decoded by the encoding its declaration names (UTF-8
/// when none is named).
pub fn decode(bytes: &[u8]) -> Result<String, String> {
    let head = &bytes[..bytes.len().min(200)];
    let head = String::from_utf8_lossy(head);
    let label = head
        .strip_prefix('\u{feff}')
        .unwrap_or(&head)
        .trim_start()
        .strip_prefix("<?xml")
        .and_then(|decl| decl.split("?>").next())
        .and_then(|decl| {
            let at = decl.find("encoding")?;
            let rest = decl[at + "encoding".len()..]
                .trim_start()
                .strip_prefix('=')?;
            let rest = rest.trim_start();
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            rest[1..].split(quote).next().map(str::to_owned)
        });
    let encoding = match &label {
        Some(l) => encoding_rs::Encoding::for_label(l.trim().as_bytes())
            .ok_or_else(|| format!("the answer declares an unknown encoding `{l}`"))?,
        None => encoding_rs::UTF_8,
    };
    let (text, _, bad) = encoding.decode(bytes);
    if bad {
        return Err(format!("the answer is not valid {}", encoding.name()));
    }
    Ok(text.into_owned())
}

fn local(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_owned(),
        None => name.to_owned(),
    }
}

/// Parses an XML document into its tree of elements (text with its
/// entities and character references resolved).
pub fn parse(xml: &str) -> Result<Node, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Node> = vec![Node::default()];
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("unreadable XML at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => stack.push(Node {
                name: local(e.name().as_ref()),
                ..Node::default()
            }),
            Event::Empty(e) => {
                let node = Node {
                    name: local(e.name().as_ref()),
                    ..Node::default()
                };
                stack.last_mut().expect("the root").children.push(node);
            }
            Event::End(_) => {
                let node = stack.pop().expect("an open element");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Err("an end tag without a start".into()),
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                stack.last_mut().expect("the root").text.push_str(&text);
            }
            Event::CData(c) => {
                let text = c.xml10_content();
                stack.last_mut().expect("the root").text.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                stack.last_mut().expect("the root").text.push_str(&resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err("the document ends inside an element".into());
    }
    let mut root = stack.pop().expect("the root");
    match root.children.len() {
        1 => Ok(root.children.pop().expect("one element")),
        _ => Err("the document has no single root element".into()),
    }
}

/// What an answer's header says.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub success: bool,
    pub reason: String,
    pub exception_id: String,
}

/// Reads `message/header/response` and returns the verdict and `bodyContent`.
pub fn read_answer(doc: &Node) -> Result<(Verdict, Node), String> {
    let response = doc
        .at(&["header", "response"])
        .ok_or("the answer has no header/response")?;
    let result = response
        .text_of("result")
        .ok_or("the answer has no result")?;
    let verdict = Verdict {
        success: result.eq_ignore_ascii_case("SUCCESS"),
        reason: response.text_of("reason").unwrap_or("").to_owned(),
        exception_id: response.text_of("exceptionID").unwrap_or("").to_owned(),
    };
    if !verdict.success && !result.eq_ignore_ascii_case("FAILURE") {
        return Err(format!("the answer's result is `{result}`"));
    }
    let body = doc
        .at(&["body", "bodyContent"])
        .cloned()
        .unwrap_or_default();
    Ok((verdict, body))
}

type XmlWriter = Writer<Cursor<Vec<u8>>>;

fn text_element(w: &mut XmlWriter, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

/// A request document: `header/securityContext` from `context` (pairs of
/// element and value, in order), `bodyContent` of type `op` with `body`.
fn request(
    context: &[(&str, &str)],
    op: &str,
    body: impl FnOnce(&mut XmlWriter) -> std::io::Result<()>,
) -> Vec<u8> {
    let mut w = Writer::new(Cursor::new(Vec::new()));
    let written: std::io::Result<()> = (|| {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("serv:message")
            .with_attribute(("xmlns:serv", NS_SERV))
            .with_attribute(("xmlns:xsi", NS_XSI))
            .write_inner_content(|w| {
                w.create_element("header").write_inner_content(|w| {
                    w.create_element("securityContext")
                        .write_inner_content(|w| {
                            for (name, value) in context {
                                text_element(w, name, value)?;
                            }
                            Ok(())
                        })?;
                    Ok(())
                })?;
                w.create_element("body").write_inner_content(|w| {
                    w.create_element("bodyContent")
                        .with_attribute(("xsi:type", op))
                        .write_inner_content(body)?;
                    Ok(())
                })?;
                Ok(())
            })?;
        Ok(())
    })();
    written.expect("writing to memory does not fail");
    w.into_inner().into_inner()
}

fn ticketed<'a>(ctx: &'a SecurityContext<'a>) -> [(&'a str, &'a str); 3] {
    [
        ("siteName", ctx.site_name),
        ("webExID", ctx.web_ex_id),
        ("sessionTicket", ctx.ticket.expose_secret()),
    ]
}

/// `AuthenticateUser`: the access token for a session ticket.
pub fn authenticate_user(site_name: &str, web_ex_id: &str, token: &SecretString) -> Vec<u8> {
    request(
        &[("webExID", web_ex_id), ("siteName", site_name)],
        "java:com.webex.service.binding.user.AuthenticateUser",
        |w| text_element(w, "accessToken", token.expose_secret()),
    )
}

/// `GetSite`.
pub fn get_site(ctx: &SecurityContext<'_>) -> Vec<u8> {
    request(
        &ticketed(ctx),
        "java:com.webex.service.binding.site.GetSite",
        |_| Ok(()),
    )
}

/// `LstMeetingType`, one page.
pub fn lst_meeting_type(ctx: &SecurityContext<'_>, start_from: u32, maximum: u32) -> Vec<u8> {
    request(
        &ticketed(ctx),
        "java:com.webex.service.binding.meetingtype.LstMeetingType",
        |w| {
            w.create_element("listControl").write_inner_content(|w| {
                text_element(w, "startFrom", &start_from.to_string())?;
                text_element(w, "maximumNum", &maximum.to_string())?;
                text_element(w, "listMethod", "OR")
            })?;
            Ok(())
        },
    )
}

/// `GetUser` (the user's `webExId` is their email on Control Hub sites).
pub fn get_user(ctx: &SecurityContext<'_>, email: &str) -> Vec<u8> {
    request(
        &ticketed(ctx),
        "java:com.webex.service.binding.user.GetUser",
        |w| text_element(w, "webExId", email),
    )
}

/// `SetUser` with only what changes, in the schema's order: `webExId`,
/// `meetingTypes` (the complete set, when it changes), `tracking` (each
/// changed code by index; an empty one clears it). Nothing else: on
/// Control Hub sites more fields could change licenses.
pub fn set_user(
    ctx: &SecurityContext<'_>,
    email: &str,
    meeting_types: Option<&[String]>,
    tracking: &[(u32, Option<String>)],
) -> Vec<u8> {
    request(
        &ticketed(ctx),
        "java:com.webex.service.binding.user.SetUser",
        |w| {
            text_element(w, "webExId", email)?;
            if let Some(types) = meeting_types {
                w.create_element("meetingTypes").write_inner_content(|w| {
                    for id in types {
                        text_element(w, "meetingType", id)?;
                    }
                    Ok(())
                })?;
            }
            if !tracking.is_empty() {
                let mut sorted: Vec<&(u32, Option<String>)> = tracking.iter().collect();
                sorted.sort_by_key(|(i, _)| *i);
                w.create_element("tracking").write_inner_content(|w| {
                    for (index, value) in sorted {
                        let name = format!("trackingCode{index}");
                        match value {
                            Some(v) => text_element(w, &name, v)?,
                            None => {
                                w.create_element(name.as_str()).write_empty()?;
                            }
                        }
                    }
                    Ok(())
                })?;
            }
            Ok(())
        },
    )
}

/// Reads an `AuthenticateUser` answer's body.
pub fn read_ticket(body: &Node) -> Result<XmlTicket, String> {
    let ticket = body
        .text_of("sessionTicket")
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no sessionTicket")?;
    let ttl = body
        .text_of("timeToLive")
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or("the answer has no timeToLive")?;
    Ok(XmlTicket {
        ticket: SecretString::from(ticket.to_owned()),
        time_to_live: Duration::from_secs(ttl),
    })
}

/// Reads a `GetSite` answer's body.
pub fn read_site(body: &Node) -> Result<XmlSite, String> {
    let instance = body
        .child("siteInstance")
        .ok_or("the answer has no siteInstance")?;
    let mut site = XmlSite::default();
    if let Some(meta) = instance.child("metaData") {
        for t in meta.all("meetingTypes") {
            if let Some(id) = t.text_of("meetingTypeID") {
                let name = t.text_of("meetingTypeName").unwrap_or("").to_owned();
                site.meeting_types.push((id.to_owned(), name));
            }
        }
    }
    if let Some(codes) = instance.child("trackingCodes") {
        for c in codes.all("trackingCode") {
            let index = c
                .text_of("index")
                .and_then(|i| i.parse().ok())
                .ok_or("a tracking code has no index")?;
            site.tracking_codes.push(XmlTrackingCode {
                index,
                name: c.text_of("name").unwrap_or("").to_owned(),
                input_mode: c.text_of("inputMode").unwrap_or("").to_owned(),
                values: c
                    .all("listValue")
                    .filter_map(|v| {
                        let value = v.text_of("value")?.to_owned();
                        let active = v
                            .text_of("active")
                            .is_none_or(|a| !a.eq_ignore_ascii_case("false"));
                        Some((value, active))
                    })
                    .collect(),
            });
        }
    }
    Ok(site)
}

/// Reads a `LstMeetingType` answer's body: its types and (total, returned).
pub fn read_meeting_types(body: &Node) -> Result<(Vec<XmlMeetingType>, u32, u32), String> {
    let records = body.child("matchingRecords");
    let number = |name: &str| {
        records
            .and_then(|r| r.text_of(name))
            .and_then(|t| t.parse::<u32>().ok())
    };
    let types: Vec<XmlMeetingType> = body
        .all("meetingType")
        .filter_map(|t| {
            Some(XmlMeetingType {
                id: t.text_of("meetingTypeID")?.to_owned(),
                prefix: t.text_of("productCodePrefix").map(str::to_owned),
                name: t
                    .text_of("displayName")
                    .filter(|n| !n.is_empty())
                    .or(t.text_of("name"))
                    .map(str::to_owned),
                active: t
                    .text_of("active")
                    .is_none_or(|a| a.eq_ignore_ascii_case("ACTIVATED")),
            })
        })
        .collect();
    let returned = number("returned").unwrap_or(types.len() as u32);
    Ok((types, number("total").unwrap_or(returned), returned))
}

/// Reads a `GetUser` answer's body.
pub fn read_user(body: &Node) -> Result<XmlUser, String> {
    let mut user = XmlUser::default();
    if let Some(types) = body.child("meetingTypes") {
        user.meeting_types = types
            .all("meetingType")
            .map(|t| t.text.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
    }
    if let Some(tracking) = body.child("tracking") {
        for code in &tracking.children {
            let index = code
                .name
                .strip_prefix("trackingCode")
                .and_then(|i| i.parse::<u32>().ok());
            if let Some(index) = index {
                let value = code.text.trim();
                if !value.is_empty() {
                    user.tracking.push((index, value.to_owned()));
                }
            }
        }
    }
    Ok(user)
}

impl Client {
    /// Sends one XML request and reads its answer: the `bodyContent` of a
    /// SUCCESS, an [`ApiError::Xml`] for a FAILURE, a transport or decode
    /// error otherwise.
    pub async fn xml(
        &self,
        endpoint: &XmlEndpoint,
        document: Vec<u8>,
        tracking_id: &str,
    ) -> Result<Answer<Node>, ApiError> {
        let req = self
            .http
            .post(endpoint.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/xml")
            .header(TRACKING_HEADER, tracking_id)
            .body(document);
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let header_tracking = header_str(&headers, TRACKING_HEADER);
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &headers, &bytes, header_tracking));
        }
        let unreadable = |detail: String| ApiError::Decode {
            status,
            detail,
            tracking_id: header_tracking.clone(),
        };
        let text = decode(&bytes).map_err(unreadable)?;
        let doc = parse(&text).map_err(unreadable)?;
        let (verdict, body) = read_answer(&doc).map_err(unreadable)?;
        if !verdict.success {
            let rate = verdict.exception_id == XML_RATE_LIMITED;
            return Err(ApiError::Xml {
                exception_id: verdict.exception_id,
                reason: verdict.reason,
                retry_after: rate.then(|| endpoint.rate_pause.as_secs().max(1).to_string()),
            });
        }
        Ok(Answer {
            value: body,
            status,
            tracking_id: header_tracking,
        })
    }

    /// [`Client::xml`], with the answer's body read by `read`.
    pub async fn xml_read<T>(
        &self,
        endpoint: &XmlEndpoint,
        document: Vec<u8>,
        tracking_id: &str,
        read: impl FnOnce(&Node) -> Result<T, String>,
    ) -> Result<Answer<T>, ApiError> {
        let a = self.xml(endpoint, document, tracking_id).await?;
        let value = read(&a.value).map_err(|detail| ApiError::Decode {
            status: a.status,
            detail,
            tracking_id: a.tracking_id.clone(),
        })?;
        Ok(Answer {
            value,
            status: a.status,
            tracking_id: a.tracking_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_ticket() -> SecretString {
        SecretString::from("T<&>\"1".to_owned())
    }

    #[test]
    fn requests_escape_every_value_and_declare_the_namespaces() {
        let ticket = ctx_ticket();
        let ctx = SecurityContext {
            site_name: "acme",
            web_ex_id: "admin@acme.com",
            ticket: &ticket,
        };
        let doc = set_user(
            &ctx,
            "o'neil&co@acme.com",
            Some(&["214".to_owned(), "216".to_owned()]),
            &[(3, Some("R&D <EU> \"Zürich\"".to_owned())), (1, None)],
        );
        let text = String::from_utf8(doc).unwrap();
        assert!(
            text.contains(r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#),
            "{text}"
        );
        assert!(text.contains(r#"xsi:type="java:com.webex.service.binding.user.SetUser""#));
        assert!(!text.contains("R&D <EU>"), "values are escaped: {text}");
        // What we wrote reads back as what we meant.
        let tree = parse(&text).unwrap();
        let sc = tree.at(&["header", "securityContext"]).unwrap();
        assert_eq!(sc.text_of("sessionTicket"), Some("T<&>\"1"));
        assert_eq!(sc.text_of("webExID"), Some("admin@acme.com"));
        let body = tree.at(&["body", "bodyContent"]).unwrap();
        assert_eq!(body.text_of("webExId"), Some("o'neil&co@acme.com"));
        let names: Vec<&str> = body.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["webExId", "meetingTypes", "tracking"]);
        let tracking = body.child("tracking").unwrap();
        let codes: Vec<(&str, &str)> = tracking
            .children
            .iter()
            .map(|c| (c.name.as_str(), c.text.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                ("trackingCode1", ""),
                ("trackingCode3", "R&D <EU> \"Zürich\"")
            ]
        );
        let auth = String::from_utf8(authenticate_user("acme", "admin@acme.com", &ticket)).unwrap();
        let tree = parse(&auth).unwrap();
        assert_eq!(
            tree.at(&["body", "bodyContent"])
                .unwrap()
                .text_of("accessToken"),
            Some("T<&>\"1")
        );
    }

    #[test]
    fn answers_are_decoded_by_their_declared_encoding_and_read_by_local_names() {
        // "Zürich" in ISO-8859-1, and a character Latin-1 lacks as a reference.
        let mut bytes = br#"<?xml version="1.0" encoding="ISO-8859-1"?>
<serv:message xmlns:serv="http://www.webex.com/schemas/2002/06/service" xmlns:use="http://www.webex.com/schemas/2002/06/service/user">
<serv:header><serv:response><serv:result>SUCCESS</serv:result><serv:gsbStatus>PRIMARY</serv:gsbStatus></serv:response></serv:header>
<serv:body><serv:bodyContent><use:webExId>a@b.co</use:webExId><use:meetingTypes><use:meetingType>214</use:meetingType><use:meetingType>216</use:meetingType></use:meetingTypes>
<use:tracking><use:trackingCode1>Z"#
            .to_vec();
        bytes.push(0xFC);
        bytes.extend_from_slice(
            br#"rich &amp; &#8364;5 &lt;x&gt;</use:trackingCode1><use:trackingCode2/></use:tracking></serv:bodyContent></serv:body></serv:message>"#,
        );
        let text = decode(&bytes).unwrap();
        let (verdict, body) = read_answer(&parse(&text).unwrap()).unwrap();
        assert!(verdict.success);
        let user = read_user(&body).unwrap();
        assert_eq!(user.meeting_types, ["214", "216"]);
        assert_eq!(user.tracking, [(1, "Zürich & €5 <x>".to_owned())]);
        // Without a declaration: UTF-8; bad bytes are an error, not garbage.
        assert!(decode(b"<a>\xFF</a>").is_err());
        assert_eq!(decode("<a>é</a>".as_bytes()).unwrap(), "<a>é</a>");
    }

    #[test]
    fn a_failure_is_read_with_its_exception_id_kept_as_text() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?><serv:message xmlns:serv="x"><serv:header><serv:response><serv:result>FAILURE</serv:result><serv:reason>API Rate Limit Reached</serv:reason><serv:gsbStatus>PRIMARY</serv:gsbStatus><serv:exceptionID>000045</serv:exceptionID></serv:response></serv:header><serv:body><serv:bodyContent/></serv:body></serv:message>"#;
        let (verdict, _) = read_answer(&parse(text).unwrap()).unwrap();
        assert_eq!(
            verdict,
            Verdict {
                success: false,
                reason: "API Rate Limit Reached".into(),
                exception_id: "000045".into(),
            }
        );
        assert!(parse("<a><b></a>").is_err());
        assert!(read_answer(&parse("<message/>").unwrap()).is_err());
    }

    #[test]
    fn site_and_meeting_type_answers_are_read() {
        let site = r#"<serv:message xmlns:serv="s" xmlns:ns1="n"><serv:header><serv:response><serv:result>SUCCESS</serv:result></serv:response></serv:header><serv:body><serv:bodyContent><ns1:siteInstance><ns1:metaData><ns1:meetingTypes><ns1:meetingTypeID>214</ns1:meetingTypeID><ns1:meetingTypeName>PRO</ns1:meetingTypeName></ns1:meetingTypes><ns1:meetingTypes><ns1:meetingTypeID>216</ns1:meetingTypeID><ns1:meetingTypeName>ONS</ns1:meetingTypeName></ns1:meetingTypes></ns1:metaData><ns1:trackingCodes><ns1:trackingCode><ns1:index>2</ns1:index><ns1:name>Department</ns1:name><ns1:inputMode>Drop down list</ns1:inputMode><ns1:hostProfile>optional</ns1:hostProfile><ns1:listValue><ns1:index>1</ns1:index><ns1:value>R&amp;D</ns1:value><ns1:active>true</ns1:active></ns1:listValue></ns1:trackingCode></ns1:trackingCodes></ns1:siteInstance></serv:bodyContent></serv:body></serv:message>"#;
        let (_, body) = read_answer(&parse(site).unwrap()).unwrap();
        let site = read_site(&body).unwrap();
        assert_eq!(site.meeting_types[1], ("216".into(), "ONS".into()));
        assert_eq!(site.tracking_codes[0].index, 2);
        assert_eq!(site.tracking_codes[0].values, [("R&D".to_owned(), true)]);
        let types = r#"<serv:message xmlns:serv="s" xmlns:mtgtype="m"><serv:header><serv:response><serv:result>SUCCESS</serv:result></serv:response></serv:header><serv:body><serv:bodyContent><mtgtype:matchingRecords><serv:total>3</serv:total><serv:returned>1</serv:returned><serv:startFrom>1</serv:startFrom></mtgtype:matchingRecords><mtgtype:meetingType><mtgtype:productCodePrefix>PRO</mtgtype:productCodePrefix><mtgtype:active>ACTIVATED</mtgtype:active><mtgtype:name>Pro 200</mtgtype:name><mtgtype:displayName>Pro Meeting</mtgtype:displayName><mtgtype:meetingTypeID>214</mtgtype:meetingTypeID></mtgtype:meetingType></serv:bodyContent></serv:body></serv:message>"#;
        let (_, body) = read_answer(&parse(types).unwrap()).unwrap();
        let (types, total, returned) = read_meeting_types(&body).unwrap();
        assert_eq!((total, returned), (3, 1));
        assert_eq!(
            types,
            [XmlMeetingType {
                id: "214".into(),
                prefix: Some("PRO".into()),
                name: Some("Pro Meeting".into()),
                active: true,
            }]
        );
    }
}
