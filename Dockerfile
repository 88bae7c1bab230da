# One image for every role: `ssekafka cache`, `ssekafka edge`, `ssekafka dev`.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ssekafka ./cmd/ssekafka

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ssekafka /usr/local/bin/ssekafka
ENTRYPOINT ["/usr/local/bin/ssekafka"]
