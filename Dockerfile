# keyledger: build the binary, then run it as a non-root user on a minimal
# image. docker build -t keyledger .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/keyledger ./cmd/keyledger \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/webhook-receiver ./examples/webhook-receiver \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/nats-server github.com/nats-io/nats-server/v2 \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
# nats-server is built from the module keyledger embeds (go.mod's version),
# the one its tests run against; docker-compose.yml runs it from this image.
COPY --from=build /out/keyledger /out/webhook-receiver /out/nats-server /usr/local/bin/
# The data folder (the Pebble projection; the embedded JetStream store when
# no --nats-url is given) belongs to the nonroot user (65532).
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV KEYLEDGER_DATA=/data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/keyledger"]
CMD ["serve"]
