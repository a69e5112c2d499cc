//! Tap errors: the local machine (permissions, files) versus the input (corrupt captures).

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(
        "no permission to capture on {device} ({detail}): run as root, or give the binary the \
         capability with `sudo setcap cap_net_raw,cap_net_admin=eip BINARY`"
    )]
    NoCapturePermission { device: String, detail: String },
    #[error("cannot capture on {device}: {detail}")]
    Capture { device: String, detail: String },
    #[error("invalid capture filter {filter:?}: {detail}")]
    Filter { filter: String, detail: String },
    #[error("{path}: {detail}")]
    Open { path: String, detail: String },
    #[error("{path}: corrupt or truncated capture at byte offset {offset} ({detail}); records before it were kept")]
    Corrupt { path: String, offset: u64, detail: String },
    #[error(
        "{path}: unsupported link type {linktype} ({name}); smtplab reads Ethernet, Linux cooked (SLL, SLL2), BSD loopback and raw IP captures"
    )]
    LinkType { path: String, linktype: i32, name: String },
}
