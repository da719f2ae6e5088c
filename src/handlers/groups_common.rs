//! Helpers shared by the group-coordinator handlers (FindCoordinator, JoinGroup, ... ConsumerGroupDescribe).

use crate::group::ClientInfo;

use super::RequestContext;

/// Who sent the request, as the coordinator records it for DescribeGroups.
pub fn client_info(ctx: &RequestContext) -> ClientInfo {
    ClientInfo { client_id: ctx.client_id.clone(), client_host: format!("/{}", ctx.peer.ip()) }
}
