/** Row shapes of the tables the console reads (the columns it selects). */
import type { McpServerStatus, OrgRole, PermissionScope } from '../../client/src/schemas.ts';

export interface Organization { id: string; name: string; slug: string }
export interface Member { organization_id: string; user_id: string; role: OrgRole; added_by: string | null; created_at: string }
export interface Toolbox { id: string; name: string; dtma_base_url: string; status: 'active' | 'unresponsive' | 'disabled'; last_heartbeat_at: string | null; last_error_summary: string | null }
export interface Instance {
  id: string; display_name: string; instance_name_on_toolbox: string; account_tool_environment_id: string; catalog_id: string;
  status: McpServerStatus; status_changed_at: string; health_status: 'healthy' | 'unhealthy' | 'unknown'; last_error_summary: string | null; secret_fields?: Record<string, string>;
  endpoint_url: string | null; mcp_server_type: string; configuration: Record<string, unknown>; priority: number;
  pinned_tool_names: string[]; pinned_read_only_tool_names: string[];
}
export interface Tool { name: string; description?: string; inputSchema?: Record<string, unknown>; annotations?: Record<string, unknown>; sha256?: string }
export interface CatalogEntry {
  id: string; name: string; display_name: string; description: string; version: string; docker_image_url: string;
  tool_manifest: Tool[]; config_schema: JsonSchema; required_oauth_providers: string[];
}
export interface JsonSchema {
  type?: string; properties?: Record<string, JsonSchema>; required?: string[]; items?: JsonSchema; enum?: unknown[];
  description?: string; default?: unknown; writeOnly?: boolean; pattern?: string; minItems?: number; maxItems?: number;
}
export interface Agent { id: string; name: string; description: string; user_id: string; is_active: boolean }
export interface Grant {
  id: string; agent_id: string; server_instance_id: string; permission_scope: PermissionScope; allowed_tools: string[] | null;
  expires_at: string | null; granted_by: string | null; granted_at: string; revoked_at: string | null; revoked_by: string | null; revoke_reason: string | null;
}
export interface Drift {
  id: string; server_instance_id: string; tool_name: string; pinned_sha256: string | null; presented_sha256: string;
  presented_definition: Tool; first_seen_at: string; last_seen_at: string; seen_count: number; approved_at: string | null;
}
export interface AuditRow {
  id: number; occurred_at: string; actor_id: string | null; actor_role: string; action: string; entity_type: string; entity_id: string;
  before: Record<string, unknown> | null; after: Record<string, unknown> | null; reason: string | null; cause: string;
}
export interface Usage {
  agent_id: string; server_instance_id: string; total_requests: number; failed_requests: number; total_duration_ms: number; last_used_at: string | null; status: string;
}
