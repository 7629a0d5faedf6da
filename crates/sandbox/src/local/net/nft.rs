//! The sandbox firewall, spoken to the kernel over nfnetlink (the protocol `nft` itself uses):
//! one table loaded once per machine, and per sandbox a single set element added or removed.
//!
//! The messages are encoded here rather than through a general nftables library because the
//! rule set is small and fixed; each helper below is one nftables expression, named as in
//! `nft --debug=netlink` output, so the rules read like the listing the kernel prints.

use std::net::Ipv4Addr;
use std::time::Duration;

use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use rustix::net::sockopt;

use crate::error::{Error, Result};

/// Host-side interface prefix; the catch-all rules match on it.
pub(super) const HOST_IF_PREFIX: &str = "fah-";
/// The set of (host interface, sandbox address) pairs that may send traffic.
const SET: &str = "sb_addrs";
const SET_ID: u32 = 1;
const IFNAMSIZ: usize = 16;

// linux/netfilter/nfnetlink.h, nf_tables.h, netfilter.h, netlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u8 = 0;
const NFT_MSG_DELTABLE: u8 = 2;
const NFT_MSG_NEWCHAIN: u8 = 3;
const NFT_MSG_NEWRULE: u8 = 6;
const NFT_MSG_NEWSET: u8 = 9;
const NFT_MSG_GETSET: u8 = 10;
const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_GETSETELEM: u8 = 13;
const NFT_MSG_DELSETELEM: u8 = 14;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG32_00: u32 = 8;
const NFT_REG32_04: u32 = 12;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CT_STATE: u32 = 0;
const NF_CT_STATE_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_LOOKUP_F_INV: u32 = 1;
const NFT_SET_CONCAT: u32 = 0x80;
/// nft's datatype ids, kept so `nft list ruleset` shows the set as `ifname . ipv4_addr`.
const TYPE_IFNAME_DOT_IPV4: u32 = (41 << 6) | 7;

/// What sandboxes may reach; everything the rules need to know.
#[derive(Debug, Clone)]
pub(super) struct Policy {
    /// The sandbox range (egress from it is masqueraded, traffic into it dropped).
    pub range: (Ipv4Addr, u8),
    /// Destinations dropped besides the range itself.
    pub blocked: Vec<(Ipv4Addr, u8)>,
    /// Name servers allowed on port 53 even inside a blocked range.
    pub dns_servers: Vec<Ipv4Addr>,
}

/// The firewall of one machine: table `inet <table>`.
#[derive(Debug, Clone)]
pub(super) struct Firewall {
    pub table: String,
}

impl Firewall {
    /// Whether the table with its element set is loaded.
    pub fn is_loaded(&self) -> Result<bool> {
        let mut message = Batch::new();
        message.begin(NFT_MSG_GETSET, NLM_F_REQUEST);
        message.str(1, &self.table); // NFTA_SET_TABLE
        message.str(2, SET); // NFTA_SET_NAME
        message.end();
        match request(&message.buf, "look up the sandbox firewall table") {
            Ok(_) => Ok(true),
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Replaces the table with the rules of `policy`, in one transaction: no packet ever sees
    /// a half-loaded rule set.
    ///
    /// Traffic from a sandbox veth to the host itself is dropped unless it answers a
    /// connection the host opened (that is how the preview proxy reaches port 3000);
    /// forwarded traffic from a sandbox must come from its own address and may not reach the
    /// sandbox range or a blocked range (bar DNS); everything else leaves masqueraded. A
    /// sandbox is only an element of the set: adding one never rewrites rules.
    pub fn load(&self, policy: &Policy) -> Result<()> {
        let t = &self.table;
        let mut batch = Batch::new();
        batch.begin_batch();
        // Creating before deleting makes the delete valid whether or not the table existed.
        batch.table(NFT_MSG_NEWTABLE, t);
        batch.table(NFT_MSG_DELTABLE, t);
        batch.table(NFT_MSG_NEWTABLE, t);
        batch.set(t);
        batch.base_chain(t, "input", "filter", NF_INET_LOCAL_IN, -5);
        batch.base_chain(t, "forward", "filter", NF_INET_FORWARD, -5);
        batch.chain(t, "from_sandbox");
        batch.base_chain(t, "postrouting", "nat", NF_INET_POST_ROUTING, 100);

        let from_sandbox = iifname_prefix;
        let to_sandbox = oifname_prefix;
        let answers = ct_established_or_related;
        batch.rule(t, "input", &[&from_sandbox(), &answers(), &[verdict(NF_ACCEPT)]]);
        batch.rule(t, "input", &[&from_sandbox(), &[counter(), verdict(NF_DROP)]]);
        batch.rule(t, "forward", &[&from_sandbox(), &[jump("from_sandbox")]]);
        batch.rule(t, "forward", &[&to_sandbox(), &answers(), &[verdict(NF_ACCEPT)]]);
        batch.rule(t, "forward", &[&to_sandbox(), &[verdict(NF_DROP)]]);

        batch.rule(t, "from_sandbox", &[&nfproto(NFPROTO_IPV6), &[verdict(NF_DROP)]]);
        batch.rule(
            t,
            "from_sandbox",
            &[&nfproto(NFPROTO_IPV4), &spoofed(), &[verdict(NF_DROP)]],
        );
        for server in &policy.dns_servers {
            for l4 in [libc::IPPROTO_UDP as u8, libc::IPPROTO_TCP as u8] {
                let dns = [
                    ip_daddr(),
                    cmp(NFT_REG_1, NFT_CMP_EQ, &server.octets()),
                    meta(NFT_META_L4PROTO, NFT_REG_1),
                    cmp(NFT_REG_1, NFT_CMP_EQ, &[l4]),
                    payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG_1),
                    cmp(NFT_REG_1, NFT_CMP_EQ, &53u16.to_be_bytes()),
                ];
                batch.rule(
                    t,
                    "from_sandbox",
                    &[&nfproto(NFPROTO_IPV4), &dns, &[verdict(NF_ACCEPT)]],
                );
            }
        }
        for &net in std::iter::once(&policy.range).chain(&policy.blocked) {
            let to_blocked = in_net(ip_daddr(), net, NFT_CMP_EQ);
            batch.rule(
                t,
                "from_sandbox",
                &[&nfproto(NFPROTO_IPV4), &to_blocked, &[counter(), verdict(NF_DROP)]],
            );
        }
        batch.rule(t, "from_sandbox", &[&[verdict(NF_ACCEPT)]]);

        let from_range = in_net(ip_saddr(), policy.range, NFT_CMP_EQ);
        let leaving_range = in_net(ip_daddr(), policy.range, NFT_CMP_NEQ);
        let masquerade = [Expr::new("masq")];
        batch.rule(
            t,
            "postrouting",
            &[&nfproto(NFPROTO_IPV4), &from_range, &leaving_range, &masquerade],
        );
        batch.end_batch();
        request(&batch.buf, &format!("load the sandbox firewall (table inet {t})")).map(drop)
    }

    /// Lets `host_if` send from `addr`.
    pub fn allow(&self, host_if: &str, addr: Ipv4Addr) -> Result<()> {
        self.element(NFT_MSG_NEWSETELEM, host_if, addr)
    }

    /// Removes what [`Firewall::allow`] added; an absent element is no error.
    pub fn revoke(&self, host_if: &str, addr: Ipv4Addr) -> Result<()> {
        match self.element(NFT_MSG_DELSETELEM, host_if, addr) {
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    fn element(&self, op: u8, host_if: &str, addr: Ipv4Addr) -> Result<()> {
        let mut batch = Batch::new();
        batch.begin_batch();
        batch.begin(op, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
        batch.str(1, &self.table); // NFTA_SET_ELEM_LIST_TABLE
        batch.str(2, SET); // NFTA_SET_ELEM_LIST_SET
        let elements = batch.nest(3); // NFTA_SET_ELEM_LIST_ELEMENTS
        let element = batch.nest(1); // NFTA_LIST_ELEM
        let key = batch.nest(1); // NFTA_SET_ELEM_KEY
        batch.bytes(1, &element_key(host_if, addr)); // NFTA_DATA_VALUE
        batch.end_nest(key);
        batch.end_nest(element);
        batch.end_nest(elements);
        batch.end();
        batch.end_batch();
        let verb = if op == NFT_MSG_NEWSETELEM { "allow" } else { "revoke" };
        request(&batch.buf, &format!("{verb} sandbox traffic from {host_if} ({addr})")).map(drop)
    }

    /// Every (host interface, sandbox address) element of the set.
    pub fn elements(&self) -> Result<Vec<(String, Ipv4Addr)>> {
        let mut message = Batch::new();
        message.begin(NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP);
        message.str(1, &self.table);
        message.str(2, SET);
        message.end();
        let replies = request(&message.buf, "list the sandbox firewall's elements")?;
        let mut found = Vec::new();
        for reply in &replies {
            for (kind, list) in attributes(reply.get(4..).unwrap_or_default()) {
                if kind != 3 {
                    continue;
                }
                for (_, element) in attributes(list) {
                    let key = attributes(element).find(|(kind, _)| *kind == 1);
                    let value = key.and_then(|(_, key)| attributes(key).find(|(kind, _)| *kind == 1));
                    if let Some((_, value)) = value.filter(|(_, v)| v.len() == IFNAMSIZ + 4) {
                        let name = value[..IFNAMSIZ].split(|b| *b == 0).next().unwrap_or_default();
                        let addr = Ipv4Addr::new(value[16], value[17], value[18], value[19]);
                        found.push((String::from_utf8_lossy(name).into_owned(), addr));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The set key: the interface name NUL-padded to IFNAMSIZ, then the address.
fn element_key(host_if: &str, addr: Ipv4Addr) -> [u8; IFNAMSIZ + 4] {
    let mut key = [0u8; IFNAMSIZ + 4];
    let name = host_if.as_bytes();
    key[..name.len().min(IFNAMSIZ - 1)].copy_from_slice(&name[..name.len().min(IFNAMSIZ - 1)]);
    key[IFNAMSIZ..].copy_from_slice(&addr.octets());
    key
}

/// Sends `buf` and collects the kernel's answers: the data messages of a dump or get, after
/// every acknowledgement came back; the first error answer fails the whole request.
fn request(buf: &[u8], action: &str) -> Result<Vec<Vec<u8>>> {
    let netlink = |source: std::io::Error| Error::Netlink {
        action: action.to_string(),
        source,
    };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(netlink)?;
    socket.bind_auto().map_err(netlink)?;
    // The kernel answers while handling the send; the timeout only guards against waiting for
    // an answer that is not coming.
    sockopt::set_socket_timeout(&socket, sockopt::Timeout::Recv, Some(Duration::from_secs(5)))
        .map_err(|e| netlink(e.into()))?;
    socket.send(buf, 0).map_err(netlink)?;
    let acks = count_acks(buf);
    let mut expected_acks = acks;
    let is_dump = messages(buf).any(|(_, flags, _)| flags & NLM_F_DUMP == NLM_F_DUMP);
    let mut data = Vec::new();
    let mut received = vec![0u8; 1 << 16];
    loop {
        let n = socket.recv(&mut &mut received[..], 0).map_err(netlink)?;
        for (kind, _, payload) in messages(&received[..n]) {
            match kind {
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                    if code != 0 {
                        return Err(netlink(std::io::Error::from_raw_os_error(-code)));
                    }
                    expected_acks = expected_acks.saturating_sub(1);
                }
                NLMSG_DONE => return Ok(data),
                _ => data.push(payload.to_vec()),
            }
        }
        // A batch is answered once every message is acknowledged; a get, by its one reply.
        if !is_dump && expected_acks == 0 && (acks > 0 || !data.is_empty()) {
            return Ok(data);
        }
    }
}

fn count_acks(buf: &[u8]) -> usize {
    messages(buf).filter(|(_, flags, _)| flags & NLM_F_ACK != 0).count()
}

/// The netlink messages in `buf`: (type, flags, payload).
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        if len < 16 || len > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        let message = (kind, flags, &rest[16..len]);
        rest = &rest[align(len).min(rest.len())..];
        Some(message)
    })
}

/// The attributes in `buf`: (type without flags, payload).
fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        let kind = u16::from_ne_bytes([*rest.get(2)?, *rest.get(3)?]) & !NLA_F_NESTED;
        if len < 4 || len > rest.len() {
            return None;
        }
        let attribute = (kind, &rest[4..len]);
        rest = &rest[align(len).min(rest.len())..];
        Some(attribute)
    })
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// One nftables expression: its name and its already-encoded attributes.
struct Expr {
    name: &'static str,
    attrs: Vec<(u16, Value)>,
}

enum Value {
    U32(u32),
    Str(&'static str),
    Data(Vec<u8>),
    /// NFTA_DATA_VERDICT: code and, for a jump, the chain.
    Verdict(i32, Option<&'static str>),
}

impl Expr {
    fn new(name: &'static str) -> Self {
        Expr {
            name,
            attrs: Vec::new(),
        }
    }

    fn with(mut self, kind: u16, value: Value) -> Self {
        self.attrs.push((kind, value));
        self
    }
}

fn meta(key: u32, dreg: u32) -> Expr {
    Expr::new("meta").with(2, Value::U32(key)).with(1, Value::U32(dreg))
}

fn cmp(sreg: u32, op: u32, data: &[u8]) -> Expr {
    Expr::new("cmp")
        .with(1, Value::U32(sreg))
        .with(2, Value::U32(op))
        .with(3, Value::Data(data.to_vec()))
}

fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr::new("payload")
        .with(1, Value::U32(dreg))
        .with(2, Value::U32(base))
        .with(3, Value::U32(offset))
        .with(4, Value::U32(len))
}

fn bitwise(reg: u32, mask: &[u8]) -> Expr {
    Expr::new("bitwise")
        .with(1, Value::U32(reg))
        .with(2, Value::U32(reg))
        .with(3, Value::U32(mask.len() as u32))
        .with(4, Value::Data(mask.to_vec()))
        .with(5, Value::Data(vec![0; mask.len()]))
}

fn counter() -> Expr {
    Expr::new("counter")
}

fn verdict(code: i32) -> Expr {
    Expr::new("immediate")
        .with(1, Value::U32(NFT_REG_VERDICT))
        .with(2, Value::Verdict(code, None))
}

fn jump(chain: &'static str) -> Expr {
    Expr::new("immediate")
        .with(1, Value::U32(NFT_REG_VERDICT))
        .with(2, Value::Verdict(NFT_JUMP, Some(chain)))
}

/// `meta nfproto <proto>`
fn nfproto(proto: u8) -> [Expr; 2] {
    [meta(NFT_META_NFPROTO, NFT_REG_1), cmp(NFT_REG_1, NFT_CMP_EQ, &[proto])]
}

/// `iifname "fah-*"`: a compare of the name's first bytes is a prefix match.
fn iifname_prefix() -> [Expr; 2] {
    [
        meta(NFT_META_IIFNAME, NFT_REG_1),
        cmp(NFT_REG_1, NFT_CMP_EQ, HOST_IF_PREFIX.as_bytes()),
    ]
}

fn oifname_prefix() -> [Expr; 2] {
    [
        meta(NFT_META_OIFNAME, NFT_REG_1),
        cmp(NFT_REG_1, NFT_CMP_EQ, HOST_IF_PREFIX.as_bytes()),
    ]
}

/// `ct state established,related`
fn ct_established_or_related() -> [Expr; 3] {
    [
        Expr::new("ct")
            .with(2, Value::U32(NFT_CT_STATE))
            .with(1, Value::U32(NFT_REG_1)),
        bitwise(NFT_REG_1, &NF_CT_STATE_ESTABLISHED_RELATED.to_ne_bytes()),
        cmp(NFT_REG_1, NFT_CMP_NEQ, &0u32.to_ne_bytes()),
    ]
}

/// `iifname . ip saddr != @sb_addrs`
fn spoofed() -> [Expr; 3] {
    [
        meta(NFT_META_IIFNAME, NFT_REG32_00),
        payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG32_04),
        Expr::new("lookup")
            .with(1, Value::Str(SET))
            .with(2, Value::U32(NFT_REG32_00))
            .with(4, Value::U32(SET_ID))
            .with(5, Value::U32(NFT_LOOKUP_F_INV)),
    ]
}

fn ip_saddr() -> Expr {
    payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1)
}

fn ip_daddr() -> Expr {
    payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, NFT_REG_1)
}

/// `<addr> [!=] net/prefix`: the loaded address, masked, compared with the network.
fn in_net(load: Expr, (net, prefix): (Ipv4Addr, u8), op: u32) -> [Expr; 3] {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    let network = u32::from(net) & mask;
    [
        load,
        bitwise(NFT_REG_1, &mask.to_be_bytes()),
        cmp(NFT_REG_1, op, &network.to_be_bytes()),
    ]
}

/// A buffer of netlink messages under construction.
struct Batch {
    buf: Vec<u8>,
    message_start: usize,
    seq: u32,
}

impl Batch {
    fn new() -> Self {
        Batch {
            buf: Vec::with_capacity(4096),
            message_start: 0,
            seq: 0,
        }
    }

    fn header(&mut self, kind: u16, flags: u16, family: u8, res_id: u16) {
        self.message_start = self.buf.len();
        self.seq += 1;
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by end()
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
    }

    fn begin(&mut self, op: u8, flags: u16) {
        self.header((NFNL_SUBSYS_NFTABLES << 8) | u16::from(op), flags, NFPROTO_INET, 0);
    }

    fn end(&mut self) {
        let len = (self.buf.len() - self.message_start) as u32;
        self.buf[self.message_start..self.message_start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn begin_batch(&mut self) {
        self.header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        self.end();
    }

    fn end_batch(&mut self) {
        self.header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        self.end();
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = (4 + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align(self.buf.len()), 0);
    }

    fn str(&mut self, kind: u16, value: &str) {
        let mut payload = value.as_bytes().to_vec();
        payload.push(0);
        self.attr(kind, &payload);
    }

    fn u32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    fn bytes(&mut self, kind: u16, value: &[u8]) {
        self.attr(kind, value);
    }

    fn nest(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn end_nest(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn table(&mut self, op: u8, name: &str) {
        self.begin(op, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
        self.str(1, name); // NFTA_TABLE_NAME
        self.end();
    }

    fn set(&mut self, table: &str) {
        self.begin(NFT_MSG_NEWSET, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
        self.str(1, table); // NFTA_SET_TABLE
        self.str(2, SET); // NFTA_SET_NAME
        self.u32(3, NFT_SET_CONCAT); // NFTA_SET_FLAGS: a hash set of concatenated keys
        self.u32(4, TYPE_IFNAME_DOT_IPV4); // NFTA_SET_KEY_TYPE
        self.u32(5, (IFNAMSIZ + 4) as u32); // NFTA_SET_KEY_LEN
        self.u32(10, SET_ID); // NFTA_SET_ID
        let desc = self.nest(9); // NFTA_SET_DESC
        let concat = self.nest(2); // NFTA_SET_DESC_CONCAT
        for field_len in [IFNAMSIZ as u32, 4] {
            let field = self.nest(1); // NFTA_LIST_ELEM
            self.u32(1, field_len); // NFTA_SET_FIELD_LEN
            self.end_nest(field);
        }
        self.end_nest(concat);
        self.end_nest(desc);
        self.end();
    }

    fn chain(&mut self, table: &str, name: &str) {
        self.begin(NFT_MSG_NEWCHAIN, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
        self.str(1, table); // NFTA_CHAIN_TABLE
        self.str(3, name); // NFTA_CHAIN_NAME
        self.end();
    }

    fn base_chain(&mut self, table: &str, name: &str, kind: &str, hook: u32, priority: i32) {
        self.begin(NFT_MSG_NEWCHAIN, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
        self.str(1, table);
        self.str(3, name);
        let hook_attr = self.nest(4); // NFTA_CHAIN_HOOK
        self.u32(1, hook); // NFTA_HOOK_HOOKNUM
        self.u32(2, priority as u32); // NFTA_HOOK_PRIORITY
        self.end_nest(hook_attr);
        self.u32(5, NF_ACCEPT as u32); // NFTA_CHAIN_POLICY
        self.str(7, kind); // NFTA_CHAIN_TYPE
        self.end();
    }

    /// A rule of `chain` made of the expressions of `parts`, in order.
    fn rule(&mut self, table: &str, chain: &str, parts: &[&[Expr]]) {
        self.begin(NFT_MSG_NEWRULE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK);
        self.str(1, table); // NFTA_RULE_TABLE
        self.str(2, chain); // NFTA_RULE_CHAIN
        let list = self.nest(4); // NFTA_RULE_EXPRESSIONS
        for expr in parts.iter().flat_map(|part| part.iter()) {
            let element = self.nest(1); // NFTA_LIST_ELEM
            self.str(1, expr.name); // NFTA_EXPR_NAME
            if !expr.attrs.is_empty() {
                let data = self.nest(2); // NFTA_EXPR_DATA
                for (kind, value) in &expr.attrs {
                    self.value(*kind, value);
                }
                self.end_nest(data);
            }
            self.end_nest(element);
        }
        self.end_nest(list);
        self.end();
    }

    fn value(&mut self, kind: u16, value: &Value) {
        match value {
            Value::U32(v) => self.u32(kind, *v),
            Value::Str(s) => self.str(kind, s),
            Value::Data(bytes) => {
                let data = self.nest(kind);
                self.bytes(1, bytes); // NFTA_DATA_VALUE
                self.end_nest(data);
            }
            Value::Verdict(code, chain) => {
                let data = self.nest(kind);
                let verdict = self.nest(2); // NFTA_DATA_VERDICT
                self.u32(1, *code as u32); // NFTA_VERDICT_CODE
                if let Some(chain) = chain {
                    self.str(2, chain); // NFTA_VERDICT_CHAIN
                }
                self.end_nest(verdict);
                self.end_nest(data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_keys_pad_the_interface_name() {
        let key = element_key("fah-abc", Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(&key[..7], b"fah-abc");
        assert!(key[7..16].iter().all(|b| *b == 0));
        assert_eq!(&key[16..], &[10, 88, 0, 2]);
    }

    #[test]
    fn messages_and_attributes_round_trip() {
        let mut batch = Batch::new();
        batch.begin(NFT_MSG_GETSET, NLM_F_REQUEST | NLM_F_ACK);
        batch.str(1, "forgeai");
        let nest = batch.nest(3);
        batch.bytes(1, &[1, 2, 3]);
        batch.end_nest(nest);
        batch.end();
        let parsed: Vec<_> = messages(&batch.buf).collect();
        assert_eq!(parsed.len(), 1);
        let (kind, flags, payload) = parsed[0];
        assert_eq!(kind, (NFNL_SUBSYS_NFTABLES << 8) | u16::from(NFT_MSG_GETSET));
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK);
        let attrs: Vec<_> = attributes(&payload[4..]).collect();
        assert_eq!(attrs[0], (1, &b"forgeai\0"[..]));
        assert_eq!(attrs[1].0, 3);
        assert_eq!(attributes(attrs[1].1).next(), Some((1, &[1u8, 2, 3][..])));
        assert_eq!(count_acks(&batch.buf), 1);
    }
}
