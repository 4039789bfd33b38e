//! Uploads (multipart, streamed to disk with the contract's checks), listing, info, download,
//! delete.

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::extract::ApiQuery;
use super::{ApiError, AppState, MAX_UPLOAD_BYTES, PageQuery, page_number};
use crate::auth::CurrentUser;
use crate::store::{FileRecord, NewFile};

const ALLOWED_EXTENSIONS: [&str; 15] = [
    "mp4", "avi", "mov", "mkv", "wmv", "mp3", "aac", "wav", "flac", "ogg", "srt", "vtt", "ass",
    "ssa", "m4a",
];

/// Media types for subtitles, which are not under `video/` or `audio/`.
const SUBTITLE_TYPES: [&str; 5] = [
    "application/x-subrip",
    "text/vtt",
    "text/x-ssa",
    "text/x-ass",
    "application/x-ass",
];

fn file_json(file: &FileRecord) -> Value {
    let mut body = serde_json::to_value(file).unwrap_or_else(|_| json!({}));
    body["download_url"] = json!(format!("/api/v1/files/{}/download", file.id));
    body
}

/// The upload's multipart body, for the OpenAPI document (axum's `Multipart` reads it).
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "describes the request body; never built")]
pub struct UploadForm {
    /// A video, audio or subtitle file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

fn upload_error(message: impl Into<String>) -> ApiError {
    ApiError::validation(&["body", "file"], "value_error", message)
}

#[utoipa::path(post, path = "/files/upload", tag = "files", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "The stored file", body = FileRecord), (status = 422, description = "Not a media file")))]
pub async fn upload(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let malformed = |e: axum::extract::multipart::MultipartError| upload_error(e.body_text());
    let mut field = loop {
        match multipart.next_field().await.map_err(malformed)? {
            Some(field) if field.name() == Some("file") => break field,
            Some(_) => continue,
            None => {
                return Err(ApiError::validation(
                    &["body", "file"],
                    "missing",
                    "Field required",
                ));
            }
        }
    };
    let original_filename = field.file_name().unwrap_or_default().to_owned();
    let extension = original_filename
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    if !ALLOWED_EXTENSIONS.contains(&extension.as_str()) {
        return Err(upload_error(format!(
            "File type .{extension} not allowed; allowed: {}",
            ALLOWED_EXTENSIONS.join(", ")
        )));
    }
    let content_type = field
        .content_type()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let known_media = content_type.starts_with("video/")
        || content_type.starts_with("audio/")
        || SUBTITLE_TYPES.contains(&content_type.as_str());
    if !known_media {
        return Err(upload_error(format!(
            "Content type {content_type:?} is not a media type"
        )));
    }

    let user_dir = state.upload_dir.join(user.id.to_string());
    tokio::fs::create_dir_all(&user_dir)
        .await
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", user_dir.display())))?;
    let filename = format!("{}.{extension}", uuid::Uuid::new_v4());
    let path = user_dir.join(&filename);
    let write_error =
        |e: std::io::Error| ApiError::internal(format!("writing {}: {e}", path.display()));
    let mut out = tokio::fs::File::create(&path).await.map_err(write_error)?;
    let mut size: u64 = 0;
    let received = async {
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            size += chunk.len() as u64;
            if size > MAX_UPLOAD_BYTES {
                return Err(upload_error("File larger than 1 GiB"));
            }
            out.write_all(&chunk).await.map_err(write_error)?;
        }
        out.flush().await.map_err(write_error)?;
        if size == 0 {
            return Err(upload_error("File is empty"));
        }
        Ok(())
    }
    .await;
    if let Err(error) = received {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(error);
    }
    let file = state
        .store
        .insert_file(NewFile {
            user_id: user.id,
            filename,
            original_filename,
            size: size as i64,
            content_type,
            storage_path: path.to_string_lossy().into_owned(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(file_json(&file))))
}

#[utoipa::path(get, path = "/files", tag = "files", security(("bearer" = [])), params(
        ("offset" = Option<i64>, Query, description = "Items to skip", example = 0),
        ("limit" = Option<i64>, Query, description = "Items per page, 1 to 100", example = 20)
    ),
    responses((status = 200, description = "A page of files", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = query.validate()?;
    let (files, total) = state.store.files(user.id, page).await?;
    let files: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "id": f.id, "original_filename": f.original_filename, "size": f.size,
                "content_type": f.content_type, "metadata": f.metadata, "created_at": f.created_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "files": files, "total": total, "page": page_number(page), "page_size": page.limit,
    })))
}

async fn owned_file(state: &AppState, user_id: i64, id: i64) -> Result<FileRecord, ApiError> {
    state
        .store
        .file(user_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("File not found"))
}

#[utoipa::path(get, path = "/files/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The file's id")),
    responses((status = 200, description = "The file", body = FileRecord), (status = 404, description = "No such file of the caller's")))]
pub async fn get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(file_json(&owned_file(&state, user.id, id).await?)))
}

#[utoipa::path(get, path = "/files/{id}/download", tag = "files", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The file's id")),
    responses((status = 200, description = "The bytes", content_type = "application/octet-stream"), (status = 404, description = "No such file of the caller's")))]
pub async fn download(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let file = owned_file(&state, user.id, id).await?;
    let handle = tokio::fs::File::open(&file.storage_path)
        .await
        .map_err(|error| open_error(std::path::Path::new(&file.storage_path), &error))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(handle));
    Ok(([(header::CONTENT_TYPE, file.content_type)], body).into_response())
}

#[utoipa::path(delete, path = "/files/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The file's id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such file of the caller's")))]
pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let file = state
        .store
        .delete_file(user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("File not found"))?;
    // The row is gone; a file already missing on disk changes nothing for the client.
    let _ = tokio::fs::remove_file(&file.storage_path).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Only a file that is gone is a 404: anything else (EMFILE under load, a permission error) is
/// the server's fault and answers 500, as the real API's unhandled error would.
fn open_error(path: &std::path::Path, error: &std::io::Error) -> ApiError {
    if error.kind() == std::io::ErrorKind::NotFound {
        ApiError::not_found("File not found")
    } else {
        ApiError::internal(format!(
            "cannot open stored file {}: {error}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_file_is_not_found() {
        let path = std::path::Path::new("/stored/1.mp4");
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(open_error(path, &missing).status(), StatusCode::NOT_FOUND);
        // EMFILE: too many open files.
        let exhausted = std::io::Error::from_raw_os_error(24);
        let answer = open_error(path, &exhausted);
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
