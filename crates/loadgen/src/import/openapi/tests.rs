use super::*;

/// A document in the shape FastAPI serves, in YAML (with integer status keys, as hand-written
/// documents have them).
const TASKS_API: &str = r##"
openapi: 3.1.0
info: {title: Tasks API, version: "2.0"}
servers:
  - url: https://api.example.com/api/v1
paths:
  /health:
    get:
      responses: {200: {description: ok}}
  /auth/register:
    post:
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/RegisterBody'}
      responses: {201: {description: made}}
  /auth/login:
    post:
      requestBody:
        content:
          application/x-www-form-urlencoded:
            schema:
              type: object
              required: [username, password]
              properties:
                username: {type: string}
                password: {type: string}
      responses:
        200:
          description: tokens
          content:
            application/json:
              schema:
                type: object
                properties:
                  access_token: {type: string}
                  refresh_token: {type: string}
  /auth/refresh:
    post:
      requestBody:
        content:
          application/json:
            schema:
              type: object
              required: [refresh_token]
              properties: {refresh_token: {type: string}}
      responses: {200: {description: tokens}}
  /files/upload:
    post:
      security: [{HTTPBearer: []}]
      requestBody:
        content:
          multipart/form-data:
            schema:
              type: object
              properties: {file: {type: string, format: binary}}
      responses: {201: {description: made}}
  /tasks/join:
    post:
      security: [{HTTPBearer: []}]
      requestBody:
        content:
          application/json:
            schema:
              type: object
              required: [file_ids]
              properties:
                file_ids: {type: array, minItems: 2, items: {type: integer}}
                output_filename: {type: string, default: joined.mp4}
                note: {anyOf: [{type: string}, {type: "null"}]}
      responses:
        201:
          description: the task
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Task'}
  /tasks:
    get:
      security: [{HTTPBearer: []}]
      parameters:
        - {name: limit, in: query, schema: {type: integer, default: 20}}
        - {name: status, in: query, schema: {type: string}}
      responses: {200: {description: tasks}}
  /tasks/{task_id}:
    parameters:
      - {name: task_id, in: path, required: true, schema: {type: integer}}
    get:
      security: [{HTTPBearer: []}]
      responses: {200: {description: the task}}
    delete:
      security: [{HTTPBearer: []}]
      responses: {204: {description: gone}}
  /auth/logout:
    post:
      responses: {204: {description: out}}
components:
  securitySchemes:
    HTTPBearer: {type: http, scheme: bearer}
  schemas:
    RegisterBody:
      type: object
      required: [username, email, password]
      properties:
        username: {type: string, minLength: 3, maxLength: 50}
        email: {type: string, format: email}
        password: {type: string}
    Task:
      type: object
      properties:
        id: {type: integer}
        status: {type: string, enum: [pending, completed]}
"##;

fn scenario_of(toml: &str) -> crate::scenario::Scenario {
    let dir = std::env::temp_dir();
    match crate::scenario::parse(toml, "imported.toml", &dir) {
        Ok(scenario) => scenario,
        Err(error) => panic!("{error}\n{toml}"),
    }
}

#[test]
fn an_api_with_a_login_becomes_a_user_that_signs_up_logs_in_and_sends_its_token() {
    let imported = import(TASKS_API, "tasks.yaml", &Options::default()).expect("imports");
    let toml = &imported.toml;
    let scenario = scenario_of(toml);
    let user = &scenario.users[0];
    let key = |index: usize| user.steps[index].key.as_str();
    let on_start: Vec<&str> = user.on_start.iter().map(|s| key(s.step)).collect();
    assert_eq!(
        on_start,
        ["post_api_v1_auth_register", "post_api_v1_auth_login"],
        "{toml}"
    );
    assert!(
        toml.contains("headers = { Authorization = \"Bearer ${access_token}\" }"),
        "{toml}"
    );
    assert!(
        toml.contains(
            "extract = { access_token = \"access_token\", refresh_token = \"refresh_token\" }"
        ),
        "{toml}"
    );
    assert!(
        toml.contains("json = { refresh_token = \"${refresh_token}\" }"),
        "the refresh sends the token the login answered:\n{toml}"
    );
    assert!(
        toml.contains("form = { password = \"${password}\", username = \"${username}\" }"),
        "{toml}"
    );
    // The server's path goes before every path; names are Locust's.
    assert_eq!(scenario.health.as_deref(), Some("/api/v1/health"), "{toml}");
    assert!(
        toml.contains("path = \"/api/v1/tasks/${task_id}\"\nname = \"/api/v1/tasks/[task_id]\""),
        "{toml}"
    );
    // The create operation's id is what the item's path asks for.
    assert!(toml.contains("extract = { task_id = \"id\" }"), "{toml}");
    // Bodies within the schema: two ids, the default file name, no null.
    assert!(
        toml.contains("json = { file_ids = [1, 1], note = ") || toml.contains("file_ids = [1, 1]"),
        "{toml}"
    );
    assert!(toml.contains("output_filename = \"joined.mp4\""), "{toml}");
    // A query parameter with a default is sent; an optional one without is not.
    assert!(
        toml.contains("path = \"/api/v1/tasks?limit=${limit}\""),
        "{toml}"
    );
    assert!(!toml.contains("status=${status}"), "{toml}");
}

#[test]
fn destructive_operations_and_uploads_are_left_out_and_said() {
    let imported = import(TASKS_API, "tasks.yaml", &Options::default()).expect("imports");
    let toml = &imported.toml;
    assert!(
        toml.contains("Left out as destructive (--include-unsafe keeps them): POST /auth/logout, DELETE /tasks/{task_id}."),
        "{toml}"
    );
    assert!(!toml.contains("method = \"DELETE\""), "{toml}");
    assert_eq!(
        imported.untranslated.len(),
        1,
        "{:?}",
        imported.untranslated
    );
    assert_eq!(imported.untranslated[0].original, "POST /files/upload");
    // The line of the path in the YAML document.
    assert_eq!(
        imported.untranslated[0].line, 48,
        "{:?}",
        imported.untranslated
    );
    assert!(
        toml.contains("# Not translated (line 48): POST /files/upload: uploads a file"),
        "{toml}"
    );
    assert!(
        toml.contains("set the weights to your traffic's mix"),
        "{toml}"
    );

    let all = import(
        TASKS_API,
        "tasks.yaml",
        &Options {
            include_unsafe: true,
        },
    )
    .expect("imports");
    scenario_of(&all.toml);
    assert!(all.toml.contains("method = \"DELETE\""), "{}", all.toml);
}

#[test]
fn documents_that_are_not_openapi_3_get_a_message_that_says_what_to_do() {
    let swagger = import(
        "{\"swagger\": \"2.0\", \"paths\": {}}",
        "s.json",
        &Options::default(),
    );
    let message = swagger.expect_err("refused").to_string();
    assert!(
        message.contains("Swagger 2.0") && message.contains("swagger2openapi"),
        "{message}"
    );
    let broken = import("{\"openapi\": ", "b.json", &Options::default());
    assert!(
        broken
            .expect_err("refused")
            .to_string()
            .contains("not valid JSON")
    );
    let no_paths = import(
        "openapi: 3.0.3\ninfo: {title: x}\n",
        "n.yaml",
        &Options::default(),
    );
    assert!(
        no_paths
            .expect_err("refused")
            .to_string()
            .contains("no `paths`")
    );
}

#[test]
fn an_api_without_login_runs_every_safe_operation_as_a_task() {
    let doc = r#"{"openapi": "3.0.3", "info": {"title": "Pets", "version": "1"},
      "paths": {"/pets/{petId}": {"get": {"parameters": [{"name": "petId", "in": "path",
        "required": true, "schema": {"type": "string", "format": "uuid"}}],
        "responses": {"200": {"description": "a pet"}}}},
        "/pets": {"post": {"requestBody": {"content": {"application/json": {"example":
          {"name": "Rex"}}}}, "responses": {"201": {"description": "made"}}}}}}"#;
    let imported = import(doc, "pets.json", &Options::default()).expect("imports");
    let scenario = scenario_of(&imported.toml);
    assert_eq!(scenario.users[0].tasks.len(), 2, "{}", imported.toml);
    assert!(scenario.users[0].on_start.is_empty(), "{}", imported.toml);
    assert!(
        imported
            .toml
            .contains("petId = \"00000000-0000-4000-8000-000000000000\""),
        "{}",
        imported.toml
    );
    assert!(
        imported.toml.contains("json = { name = \"Rex\" }"),
        "{}",
        imported.toml
    );
}

#[test]
fn a_generic_id_is_named_by_its_collection() {
    assert_eq!(param_variable("/files/{id}/download", "id"), "files_id");
    assert_eq!(param_variable("/tasks/{id}", "id"), "tasks_id");
    assert_eq!(param_variable("/tasks/{task_id}", "task_id"), "task_id");
    assert_eq!(param_variable("/{id}", "id"), "id");
}
