# activity-sync: a small, non-root image with the binary only.
#   docker build -t activity-sync .
# The definitions directory is a mounted ConfigMap (/etc/activity-sync/definitions, the
# default of ACTIVITY_SYNC_DEFINITIONS_DIR); secrets are mounted files.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin activity-sync \
 && cp target/release/activity-sync /activity-sync

# distroless/cc: glibc and libgcc for the binary, CA certificates, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /activity-sync /usr/local/bin/activity-sync
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/activity-sync"]
CMD ["serve"]
