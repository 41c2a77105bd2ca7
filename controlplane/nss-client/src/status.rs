//! The NSS client state that `ipsec -w` shows (NMI GET_IKENSINFO records).

use std::net::{IpAddr, SocketAddr};

use gatekey_nmi::records::{IkeNsInfoRecord, NssConnectionState, NssServerRole};
use nss_proto::{API_VERSION_1, Services};

/// One stack's NSS client state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    /// The stack.
    pub stack_name: String,
    /// The client name.
    pub client_name: String,
    /// The user ID.
    pub user_id: String,
    /// Connection state.
    pub state: NssConnectionState,
    /// Which configured server the state refers to (the one connected, or
    /// being tried).
    pub role: Option<NssServerRole>,
    /// `host:port` of that server, as configured.
    pub server: Option<String>,
    /// Local address of the connection.
    pub local_addr: Option<SocketAddr>,
    /// Server address of the connection.
    pub server_addr: Option<SocketAddr>,
    /// The server's system name.
    pub server_system_name: Option<String>,
    /// The highest API version this client speaks.
    pub client_api_version: u16,
    /// The API version in use.
    pub server_api_version: Option<u16>,
    /// Services selected (configured).
    pub selected: Services,
    /// Services the server enabled (while connected).
    pub enabled: Option<Services>,
    /// When the current connection was established (Unix seconds).
    pub time_connected: Option<u64>,
    /// When the last message was sent to the server (Unix seconds).
    pub time_last_message: Option<u64>,
    /// The last failure, for operators.
    pub last_error: Option<String>,
    /// Successful connections so far.
    pub connects: u64,
    /// Switches between primary and backup so far.
    pub switches: u64,
}

impl ClientStatus {
    pub(crate) fn initial(stack: &str, client: &str, user: &str, selected: Services) -> Self {
        ClientStatus {
            stack_name: stack.to_owned(),
            client_name: client.to_owned(),
            user_id: user.to_ascii_uppercase(),
            state: NssConnectionState::Connecting,
            role: None,
            server: None,
            local_addr: None,
            server_addr: None,
            server_system_name: None,
            client_api_version: API_VERSION_1,
            server_api_version: None,
            selected,
            enabled: None,
            time_connected: None,
            time_last_message: None,
            last_error: None,
            connects: 0,
            switches: 0,
        }
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.state == NssConnectionState::Connected
    }

    /// The NMI record for `ipsec -w` (`docs/nmi-protocol.md` §5.10).
    pub fn to_record(&self) -> IkeNsInfoRecord {
        let connected = self.is_connected();
        let unmap = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        IkeNsInfoRecord {
            stack_name: self.stack_name.clone(),
            client_name: Some(self.client_name.clone()),
            client_api_version: Some(self.client_api_version),
            server_api_version: self.server_api_version.filter(|_| connected),
            ns_services_supported: true,
            remote_management_selected: self.selected.contains(Services::REMOTE_MGMT),
            remote_management_enabled: self
                .enabled
                .filter(|_| connected)
                .map(|e| e.contains(Services::REMOTE_MGMT)),
            certificate_services_selected: self.selected.contains(Services::CERT),
            certificate_services_enabled: self
                .enabled
                .filter(|_| connected)
                .map(|e| e.contains(Services::CERT)),
            ns_client_ip_address: self.local_addr.filter(|_| connected).map(|a| unmap(a.ip())),
            ns_client_port: self.local_addr.filter(|_| connected).map(|a| a.port()),
            ns_server_ip_address: self
                .server_addr
                .filter(|_| connected)
                .map(|a| unmap(a.ip())),
            ns_server_port: self.server_addr.filter(|_| connected).map(|a| a.port()),
            ns_server_system_name: self.server_system_name.clone().filter(|_| connected),
            ns_server_role: self.role,
            user_id: Some(self.user_id.clone()),
            connection_state: Some(self.state),
            time_connected_to_ns_server: self.time_connected.filter(|_| connected),
            time_of_last_message_to_ns_server: self.time_last_message.filter(|_| connected),
        }
    }
}
