"""Argos's gRPC protocol (service/grpc/protocol) against the stock ``tritonclient.grpc``'s:
every service method, message, field and enum value Argos declares is Triton's, with the
same number and type, so the two talk on the wire; the committed modules are protoc's
output of the committed ``.proto``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from tritonclient.grpc import service_pb2 as triton

from service.grpc.protocol import inference_pb2 as argos

REPO = Path(__file__).resolve().parents[3]
PROTOCOL = Path("service/grpc/protocol")
SERVICE = "GRPCInferenceService"


def messages(descriptors: Iterator[Descriptor]) -> Iterator[Descriptor]:
    """Every message, nested ones (map entries among them) included."""
    for descriptor in descriptors:
        yield descriptor
        yield from messages(iter(descriptor.nested_types))


def argos_messages() -> list[Descriptor]:
    return list(messages(iter(argos.DESCRIPTOR.message_types_by_name.values())))


def argos_enums() -> list[EnumDescriptor]:
    nested = [enum for message in argos_messages() for enum in message.enum_types]
    return [*argos.DESCRIPTOR.enum_types_by_name.values(), *nested]


def wire(field: FieldDescriptor) -> tuple:
    """What decides how a field travels and is read: its number, type, cardinality,
    presence, the message or enum it holds and its oneof."""
    return (
        field.number,
        field.type,
        field.is_repeated,
        field.is_required,
        field.has_presence,
        field.message_type.full_name if field.message_type else None,
        field.enum_type.full_name if field.enum_type else None,
        field.containing_oneof.name if field.containing_oneof else None,
    )


def test_the_package_and_service_are_the_protocols() -> None:
    assert argos.DESCRIPTOR.package == triton.DESCRIPTOR.package == "inference"
    ours = argos.DESCRIPTOR.services_by_name[SERVICE]
    theirs = triton.DESCRIPTOR.services_by_name[SERVICE]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    assert len(ours.methods) == 10
    for method in ours.methods:
        stock = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            stock.input_type.full_name,
            stock.output_type.full_name,
        ), method.name
        assert (method.client_streaming, method.server_streaming) == (
            stock.client_streaming,
            stock.server_streaming,
        ), method.name


@pytest.mark.parametrize("message", argos_messages(), ids=lambda message: message.full_name)
def test_every_field_is_the_protocols(message: Descriptor) -> None:
    stock = triton.DESCRIPTOR.pool.FindMessageTypeByName(message.full_name)
    assert message.GetOptions().map_entry == stock.GetOptions().map_entry
    for field in message.fields:
        assert field.name in stock.fields_by_name, f"{message.full_name}.{field.name}"
        assert wire(field) == wire(stock.fields_by_name[field.name]), field.full_name
    if message.GetOptions().map_entry or not message.fields:
        assert set(message.fields_by_name) == set(stock.fields_by_name)


@pytest.mark.parametrize("enum", argos_enums(), ids=lambda enum: enum.full_name)
def test_every_enum_value_is_the_protocols(enum: EnumDescriptor) -> None:
    stock = triton.DESCRIPTOR.pool.FindEnumTypeByName(enum.full_name)
    ours = {value.name: value.number for value in enum.values}
    assert ours == {value.name: value.number for value in stock.values}


def test_a_stock_request_reads_the_same_in_argos_messages() -> None:
    request = triton.ModelInferRequest(model_name="colours", id="7")
    tensor = request.inputs.add(name="image", datatype="BYTES", shape=[1])
    tensor.parameters["binary_data_size"].int64_param = 3
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = 2
    request.raw_input_contents.append(b"abc")
    read = argos.ModelInferRequest.FromString(request.SerializeToString())
    assert read.SerializeToString(deterministic=True) == request.SerializeToString(
        deterministic=True
    )
    assert read.inputs[0].parameters["binary_data_size"].int64_param == 3
    assert read.outputs[0].parameters["classification"].WhichOneof("parameter_choice") == (
        "int64_param"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools is not installed"
)
def test_the_committed_modules_are_what_protoc_generates(tmp_path: Path) -> None:
    subprocess.run(
        [REPO / "scripts" / "protos", tmp_path],
        check=True,
        env=os.environ | {"PYTHON": sys.executable},
        timeout=60,
    )
    generated = sorted(path.name for path in (tmp_path / PROTOCOL).iterdir())
    committed = sorted(
        path.name for path in (REPO / PROTOCOL).iterdir() if path.suffix in {".py", ".pyi"}
    )
    assert generated == [name for name in committed if name != "__init__.py"]
    for name in generated:
        assert (tmp_path / PROTOCOL / name).read_bytes() == (REPO / PROTOCOL / name).read_bytes()
