//! AWS XML responses as JSON.
//!
//! Owns: the one XML-to-JSON conversion every XML API answer goes through
//! ([`xml_to_json`]) and the list normalisation callers apply to its output ([`list`]).
//!
//! Must never: panic or recurse on untrusted input (the conversion runs on an explicit
//! stack with a depth limit), or take more than linear time in the size of the document.
//!
//! Conversion rules, applied to the content of the root element (the root's own name is
//! dropped, so `<DescribeVpcsResponse>` yields `{"requestId": .., "vpcSet": [..]}`):
//! - a leaf element becomes its text, trimmed; an empty element becomes `""`;
//! - an element whose children are all `<item>` or all `<member>` becomes an array;
//! - other elements become objects; repeated child names become arrays;
//! - attributes become fields under their local name (`xsi:type="Group"` gives
//!   `"type": "Group"`); `xmlns` declarations are dropped, prefixes stripped;
//! - a leaf with attributes keeps its text under `"_text"`;
//! - entities and CDATA are decoded.
//!
//! Because a one-element list and an empty list look like an object and `""`, callers
//! read lists through [`list`].

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Deepest element nesting accepted (AWS answers stay far below it).
const MAX_DEPTH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed xml at byte {position}: {reason}")]
    Malformed { position: u64, reason: String },
    #[error("xml nested deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("no root element")]
    NoRoot,
}

/// An element being read: its attributes, children and text so far.
struct Frame {
    attributes: Map<String, Value>,
    children: Vec<(String, Value)>,
    text: String,
}

impl Frame {
    fn open(start: &BytesStart<'_>, position: u64) -> Result<Frame, XmlError> {
        let mut attributes = Map::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| XmlError::Malformed {
                position,
                reason: e.to_string(),
            })?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let name = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
            let value = attr.unescape_value().map_err(|e| XmlError::Malformed {
                position,
                reason: e.to_string(),
            })?;
            attributes.insert(name, Value::String(value.into_owned()));
        }
        Ok(Frame {
            attributes,
            children: Vec::new(),
            text: String::new(),
        })
    }

    fn close(self) -> Value {
        let Frame {
            mut attributes,
            children,
            text,
        } = self;
        if children.is_empty() {
            let text = text.trim().to_string();
            if attributes.is_empty() {
                return Value::String(text);
            }
            if !text.is_empty() {
                attributes.insert("_text".to_string(), Value::String(text));
            }
            return Value::Object(attributes);
        }
        let all_named = |n: &str| children.iter().all(|(name, _)| name == n);
        if all_named("item") || all_named("member") {
            return Value::Array(children.into_iter().map(|(_, v)| v).collect());
        }
        let mut object = attributes;
        // Keys whose value is an array built from repeated siblings (as opposed to an
        // array that was a child's own value).
        let mut repeated: HashSet<String> = HashSet::new();
        for (name, value) in children {
            match object.get_mut(&name) {
                None => {
                    object.insert(name, value);
                }
                Some(existing) => {
                    if repeated.contains(&name) {
                        if let Value::Array(items) = existing {
                            items.push(value);
                        }
                    } else {
                        let first = std::mem::take(existing);
                        *existing = Value::Array(vec![first, value]);
                        repeated.insert(name);
                    }
                }
            }
        }
        Value::Object(object)
    }
}

/// Convert an XML document to JSON: the value of its root element (rules in the module
/// header). Errors on malformed XML, never panics.
pub fn xml_to_json(xml: &[u8]) -> Result<Value, XmlError> {
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<(String, Frame)> = Vec::new();
    loop {
        let position = reader.buffer_position();
        let malformed = |e: quick_xml::Error| XmlError::Malformed {
            position,
            reason: e.to_string(),
        };
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                stack.push((name, Frame::open(&start, position)?));
            }
            Event::Empty(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let value = Frame::open(&start, position)?.close();
                match stack.last_mut() {
                    Some((_, parent)) => parent.children.push((name, value)),
                    None => return Ok(value),
                }
            }
            Event::End(_) => {
                let Some((name, frame)) = stack.pop() else {
                    return Err(XmlError::Malformed {
                        position,
                        reason: "end tag without start".to_string(),
                    });
                };
                let value = frame.close();
                match stack.last_mut() {
                    Some((_, parent)) => parent.children.push((name, value)),
                    None => return Ok(value),
                }
            }
            Event::Text(text) => {
                if let Some((_, frame)) = stack.last_mut() {
                    let text = text.unescape().map_err(malformed)?;
                    frame.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                if let Some((_, frame)) = stack.last_mut() {
                    frame
                        .text
                        .push_str(&String::from_utf8_lossy(&data.into_inner()));
                }
            }
            Event::Eof => {
                return Err(if stack.is_empty() {
                    XmlError::NoRoot
                } else {
                    XmlError::Malformed {
                        position,
                        reason: "unexpected end of document".to_string(),
                    }
                });
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// The elements of a value that should be a list: an array's items, a single object or
/// non-empty string as one item, `""` and `null` as none.
pub fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(xml: &str) -> Value {
        xml_to_json(xml.as_bytes()).expect("valid xml")
    }

    #[test]
    fn ec2_item_lists_and_empty_sets() {
        let v = convert(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
              <requestId>r-1</requestId>
              <vpcSet>
                <item>
                  <vpcId>vpc-1</vpcId>
                  <tagSet><item><key>Name</key><value>a &amp; b</value></item></tagSet>
                  <ipv6CidrBlockAssociationSet/>
                  <cidrBlockAssociationSet>
                  </cidrBlockAssociationSet>
                </item>
                <item><vpcId>vpc-2</vpcId><tagSet/></item>
              </vpcSet>
              <nextToken/>
            </DescribeVpcsResponse>"#,
        );
        assert_eq!(
            v,
            json!({
                "requestId": "r-1",
                "vpcSet": [
                    {"vpcId": "vpc-1", "tagSet": [{"key": "Name", "value": "a & b"}],
                     "ipv6CidrBlockAssociationSet": "", "cidrBlockAssociationSet": ""},
                    {"vpcId": "vpc-2", "tagSet": ""}
                ],
                "nextToken": ""
            })
        );
        assert_eq!(list(&v["vpcSet"]).len(), 2);
        assert!(list(&v["vpcSet"][1]["tagSet"]).is_empty());
        assert!(list(&v["missing"]).is_empty());
    }

    #[test]
    fn iam_member_lists() {
        let v = convert(
            r#"<ListUsersResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
              <ListUsersResult>
                <IsTruncated>true</IsTruncated><Marker>m1</Marker>
                <Users>
                  <member><UserName>alice</UserName><Path>/</Path></member>
                </Users>
              </ListUsersResult>
              <ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>
            </ListUsersResponse>"#,
        );
        let users = list(&v["ListUsersResult"]["Users"]);
        assert_eq!(users.len(), 1);
        assert_eq!(users[0]["UserName"], "alice");
        assert_eq!(v["ListUsersResult"]["IsTruncated"], "true");
        assert_eq!(v["ResponseMetadata"]["RequestId"], "x");
    }

    #[test]
    fn s3_grants_with_xsi_type_and_repeated_siblings() {
        let v = convert(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Owner><ID>owner-id</ID><DisplayName>me</DisplayName></Owner>
              <AccessControlList>
                <Grant>
                  <Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">
                    <ID>owner-id</ID>
                  </Grantee>
                  <Permission>FULL_CONTROL</Permission>
                </Grant>
                <Grant>
                  <Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">
                    <URI>http://acs.amazonaws.com/groups/global/AllUsers</URI>
                  </Grantee>
                  <Permission>READ</Permission>
                </Grant>
              </AccessControlList>
            </AccessControlPolicy>"#,
        );
        let grants = list(&v["AccessControlList"]["Grant"]);
        assert_eq!(grants.len(), 2);
        assert_eq!(grants[0]["Grantee"]["type"], "CanonicalUser");
        assert_eq!(grants[1]["Grantee"]["type"], "Group");
        assert_eq!(
            grants[1]["Grantee"]["URI"],
            "http://acs.amazonaws.com/groups/global/AllUsers"
        );
        assert!(grants[1]["Grantee"].get("xsi").is_none());

        // a single bucket stays an object; list() makes it one item
        let one = convert(
            "<ListAllMyBucketsResult><Buckets><Bucket><Name>b</Name></Bucket></Buckets></ListAllMyBucketsResult>",
        );
        assert_eq!(list(&one["Buckets"]["Bucket"]).len(), 1);
        // a repeated name whose values are arrays still stacks, without flattening
        let nested = convert("<r><a><item>1</item></a><a><item>2</item></a><a/></r>");
        assert_eq!(nested, json!({"a": [["1"], ["2"], ""]}));
    }

    #[test]
    fn root_leaf_attributes_cdata_and_prefixes() {
        assert_eq!(
            convert(
                r#"<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">eu-west-1</LocationConstraint>"#
            ),
            json!("eu-west-1")
        );
        assert_eq!(convert("<LocationConstraint/>"), json!(""));
        assert_eq!(
            convert(r#"<r><p:v a="1" p:b="&lt;2&gt;">x</p:v><c><![CDATA[<raw>]]></c></r>"#),
            json!({"v": {"a": "1", "b": "<2>", "_text": "x"}, "c": "<raw>"})
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "   ",
            "not xml at all",
            "<a><b></a>",
            "<a>",
            "</a>",
            "<a>&bogus;</a>",
            "<a x='1' x='2'/>",
            "<html><body>500 Internal Server Error",
            "\u{0}\u{1}<<<>>>",
        ] {
            assert!(xml_to_json(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        let deep = "<a>".repeat(10_000);
        assert!(matches!(
            xml_to_json(deep.as_bytes()),
            Err(XmlError::TooDeep)
        ));
        // invalid UTF-8 in text is replaced or rejected, never a panic
        let _ = xml_to_json(b"<a>\xff\xfe</a>");
    }

    #[test]
    fn large_documents_convert_in_linear_time() {
        let mut xml = String::from("<DescribeInstancesResponse><reservationSet>");
        let item = "<item><instanceId>i-0123456789abcdef0</instanceId><state><name>running</name></state><tagSet><item><key>Owner</key><value>team</value></item></tagSet></item>";
        while xml.len() < 10 * 1024 * 1024 {
            xml.push_str(item);
        }
        xml.push_str("</reservationSet></DescribeInstancesResponse>");
        let count = (xml.len() - 70) / item.len();
        let start = std::time::Instant::now();
        let v = xml_to_json(xml.as_bytes()).expect("large document");
        let elapsed = start.elapsed();
        assert!(list(&v["reservationSet"]).len() >= count);
        // a quadratic conversion of 10 MB would take minutes; linear takes well under this
        assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");

        // many repeated siblings (not item/member) also stay linear
        let mut flat = String::from("<r>");
        for i in 0..100_000 {
            flat.push_str(&format!("<Bucket>{i}</Bucket>"));
        }
        flat.push_str("</r>");
        let v = xml_to_json(flat.as_bytes()).expect("flat");
        assert_eq!(list(&v["Bucket"]).len(), 100_000);
    }
}
