"""Server reflection, as grpcurl, ghz and Postman expect it: ``grpc.reflection.v1`` and
``grpc.reflection.v1alpha``, both answered from the protobuf descriptor pool.

grpcio-reflection serves v1alpha only, and it answers ``file_containing_symbol`` with the
pool's ``FindFileContainingSymbol``, which knows messages, enums, nested types, fields, enum
values and services but not methods: ``grpcurl describe`` of a method and ghz's reflection
mode, which looks its method up by full name, got NOT_FOUND (grpc/grpc#34743). Here a method
(``trackline.v1.TrackingService.GetRun``) is found through its service.

v1 is v1alpha under another package name: the same messages with the same fields and numbers
(grpc-proto's ``grpc/reflection/v1/reflection.proto`` differs from v1alpha only in its
package and file options). So a v1 call is parsed and answered with v1alpha's generated
messages, the bytes being the same; and v1's file, which reflection describes like any other
(``describe grpc.reflection.v1.ServerReflection``), is v1alpha's file renamed into v1's
package, added to the pool at import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2 as pb

METHOD = "ServerReflectionInfo"


def _add_v1_file(pool: descriptor_pool.DescriptorPool) -> FileDescriptor:
    """Adds ``grpc/reflection/v1/reflection.proto`` to ``pool``, made from v1alpha's file
    with every name moved into ``grpc.reflection.v1`` and v1's file options."""
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."

    def moved(type_name: str) -> str:
        if not type_name.startswith(old):
            raise ValueError(f"{type_name} is not in v1alpha's package")
        return new + type_name.removeprefix(old)

    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = "grpc.reflection.v1"
    for message in proto.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = moved(field.type_name)
    for method in proto.service[0].method:
        method.input_type = moved(method.input_type)
        method.output_type = moved(method.output_type)
    proto.options.Clear()
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.java_multiple_files = True
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    return pool.AddSerializedFile(proto.SerializeToString())  # type: ignore[no-any-return]


V1_FILE = _add_v1_file(descriptor_pool.Default())
V1_SERVICE = V1_FILE.services_by_name["ServerReflection"].full_name
V1ALPHA_SERVICE = pb.DESCRIPTOR.services_by_name["ServerReflection"].full_name
# The reflection services themselves, which reflection lists beside the services it is given.
SERVICE_NAMES = (V1_SERVICE, V1ALPHA_SERVICE)


def add_reflection(
    server: grpc.aio.Server,
    services: Iterable[str],
    pool: descriptor_pool.DescriptorPool | None = None,
) -> None:
    """Serves reflection v1 and v1alpha on ``server`` over ``pool`` (the default pool when
    None). ``list_services`` answers ``services`` and the two reflection services; symbol
    and file lookups answer anything in the pool."""
    reflection = ServerReflection(
        (*services, *SERVICE_NAMES), descriptor_pool.Default() if pool is None else pool
    )
    handlers = {
        METHOD: grpc.stream_stream_rpc_method_handler(
            reflection.info,
            request_deserializer=pb.ServerReflectionRequest.FromString,
            response_serializer=pb.ServerReflectionResponse.SerializeToString,
        )
    }
    for name in SERVICE_NAMES:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)


class ServerReflection:
    """Answers each request of a ``ServerReflectionInfo`` stream with one response. A file
    comes with every file it imports, transitively, the file asked for first; what cannot
    be found is an ``error_response`` with NOT_FOUND, as the protocol has it (the stream
    goes on)."""

    def __init__(self, services: Iterable[str], pool: descriptor_pool.DescriptorPool) -> None:
        self.services = tuple(sorted(set(services)))
        self.pool = pool

    async def info(
        self, requests: AsyncIterator[pb.ServerReflectionRequest], context: Any
    ) -> AsyncIterator[pb.ServerReflectionResponse]:
        async for request in requests:
            yield self.answer(request)

    def answer(self, request: pb.ServerReflectionRequest) -> pb.ServerReflectionResponse:
        response = pb.ServerReflectionResponse(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                listed = [pb.ServiceResponse(name=name) for name in self.services]
                response.list_services_response.service.extend(listed)
            elif kind == "file_by_filename":
                self._add_files(response, self.pool.FindFileByName(request.file_by_filename))
            elif kind == "file_containing_symbol":
                self._add_files(
                    response, self.file_containing_symbol(request.file_containing_symbol)
                )
            elif kind == "file_containing_extension":
                wanted = request.file_containing_extension
                extendee = self.pool.FindMessageTypeByName(wanted.containing_type)
                extension = self.pool.FindExtensionByNumber(extendee, wanted.extension_number)
                self._add_files(response, self.pool.FindFileContainingSymbol(extension.full_name))
            elif kind == "all_extension_numbers_of_type":
                extendee = self.pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(e.number for e in self.pool.FindAllExtensions(extendee))
                response.all_extension_numbers_response.base_type_name = extendee.full_name
                response.all_extension_numbers_response.extension_number.extend(numbers)
            else:
                return _error(response, grpc.StatusCode.INVALID_ARGUMENT, "no request was set")
        except KeyError:
            return _error(response, grpc.StatusCode.NOT_FOUND, _not_found(request))
        return response

    def file_containing_symbol(self, symbol: str) -> FileDescriptor:
        """The file that declares ``symbol``; a method is found through its service (the pool
        does not look methods up). KeyError when there is no such symbol."""
        try:
            return self.pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            service = self.pool.FindServiceByName(service_name)
            if method not in service.methods_by_name:
                raise
            return service.file  # type: ignore[no-any-return]

    @staticmethod
    def _add_files(response: pb.ServerReflectionResponse, file: FileDescriptor) -> None:
        """Sets ``response`` to ``file`` and the files it imports, transitively, each once."""
        files: dict[str, FileDescriptor] = {}
        pending = [file]
        while pending:
            next_file = pending.pop(0)
            if next_file.name not in files:
                files[next_file.name] = next_file
                pending.extend(next_file.dependencies)
        serialized = response.file_descriptor_response.file_descriptor_proto
        for each in files.values():
            proto = descriptor_pb2.FileDescriptorProto()
            each.CopyToProto(proto)
            serialized.append(proto.SerializeToString())


def _not_found(request: pb.ServerReflectionRequest) -> str:
    kind = request.WhichOneof("message_request")
    if kind == "file_by_filename":
        return f"no file named {request.file_by_filename!r}"
    if kind == "file_containing_symbol":
        return f"no symbol named {request.file_containing_symbol!r}"
    if kind == "file_containing_extension":
        wanted = request.file_containing_extension
        return f"no extension {wanted.extension_number} of {wanted.containing_type!r}"
    return f"no message type named {request.all_extension_numbers_of_type!r}"


def _error(
    response: pb.ServerReflectionResponse, code: grpc.StatusCode, message: str
) -> pb.ServerReflectionResponse:
    response.error_response.error_code = code.value[0]
    response.error_response.error_message = message
    return response
