defmodule PodDist.Test.JSON do
  @moduledoc """
  Minimal JSON encoder/decoder for the test suite.

  This module exists only because hex.pm is unreachable from the build
  environment (so Jason cannot be fetched) and the test suite needs JSON to
  talk to the Kubernetes API simulator. It is not meant for production use.
  """

  @unescape %{
    ?" => ?",
    ?\\ => ?\\,
    ?/ => ?/,
    ?b => ?\b,
    ?f => ?\f,
    ?n => ?\n,
    ?r => ?\r,
    ?t => ?\t
  }

  defguardp is_hex(c) when c in ?0..?9 or c in ?a..?f or c in ?A..?F

  ## Encoding

  @spec encode!(term) :: String.t()
  def encode!(term), do: term |> encode() |> IO.iodata_to_binary()

  defp encode(nil), do: "null"
  defp encode(true), do: "true"
  defp encode(false), do: "false"
  defp encode(atom) when is_atom(atom), do: atom |> Atom.to_string() |> encode()
  defp encode(int) when is_integer(int), do: Integer.to_string(int)
  defp encode(float) when is_float(float), do: Float.to_string(float)

  defp encode(string) when is_binary(string) do
    unless String.valid?(string), do: raise(ArgumentError, "invalid UTF-8: #{inspect(string)}")
    [?", for(<<byte <- string>>, into: "", do: escape_byte(byte)), ?"]
  end

  defp encode(list) when is_list(list), do: [?[, list |> Enum.map(&encode/1) |> join(), ?]]

  defp encode(map) when is_map(map) and not is_struct(map) do
    pairs = Enum.map(map, fn {key, value} -> [encode(key!(key)), ?:, encode(value)] end)
    [?{, join(pairs), ?}]
  end

  defp encode(term), do: raise(ArgumentError, "cannot encode #{inspect(term)} as JSON")

  defp join(items), do: Enum.intersperse(items, ?,)

  defp key!(key) when is_binary(key) or is_atom(key), do: key
  defp key!(key), do: raise(ArgumentError, "unsupported JSON object key #{inspect(key)}")

  defp escape_byte(?"), do: "\\\""
  defp escape_byte(?\\), do: "\\\\"
  defp escape_byte(?\n), do: "\\n"
  defp escape_byte(?\r), do: "\\r"
  defp escape_byte(?\t), do: "\\t"
  defp escape_byte(?\b), do: "\\b"
  defp escape_byte(?\f), do: "\\f"

  defp escape_byte(b) when b < 0x20,
    do: "\\u" <> String.pad_leading(Integer.to_string(b, 16), 4, "0")

  defp escape_byte(byte), do: <<byte>>

  ## Decoding

  @spec decode!(String.t()) :: term
  def decode!(input) when is_binary(input) do
    {value, rest} = value(skip_ws(input))

    case skip_ws(rest) do
      "" -> value
      rest -> fail(rest, "unexpected trailing data")
    end
  catch
    {__MODULE__, rest, message} ->
      position = byte_size(input) - byte_size(rest)
      raise ArgumentError, "invalid JSON at byte #{position}: #{message}"
  end

  @spec decode_lines!(String.t()) :: [term]
  def decode_lines!(input) when is_binary(input) do
    input
    |> String.split("\n")
    |> Enum.reject(&(String.trim(&1) == ""))
    |> Enum.map(&decode!/1)
  end

  defp fail(rest, message), do: throw({__MODULE__, rest, message})

  defp skip_ws(<<c, rest::binary>>) when c in [?\s, ?\t, ?\n, ?\r], do: skip_ws(rest)
  defp skip_ws(rest), do: rest

  defp value(<<?{, rest::binary>>), do: object(skip_ws(rest))
  defp value(<<?[, rest::binary>>), do: array(skip_ws(rest))
  defp value(<<?", rest::binary>>), do: string(rest, [])
  defp value(<<"true", rest::binary>>), do: {true, rest}
  defp value(<<"false", rest::binary>>), do: {false, rest}
  defp value(<<"null", rest::binary>>), do: {nil, rest}
  defp value(<<c, _::binary>> = rest) when c == ?- or c in ?0..?9, do: number(rest)
  defp value(""), do: fail("", "unexpected end of input")
  defp value(rest), do: fail(rest, "unexpected character #{inspect(binary_part(rest, 0, 1))}")

  defp object(<<?}, rest::binary>>), do: {%{}, rest}
  defp object(rest), do: members(rest, %{})

  defp members(<<?", rest::binary>>, acc) do
    {key, rest} = string(rest, [])
    {value, rest} = rest |> skip_ws() |> expect(?:) |> skip_ws() |> value()
    acc = Map.put(acc, key, value)

    case skip_ws(rest) do
      <<?,, rest::binary>> -> members(skip_ws(rest), acc)
      <<?}, rest::binary>> -> {acc, rest}
      rest -> fail(rest, "expected ',' or '}'")
    end
  end

  defp members(rest, _acc), do: fail(rest, "expected string key")

  defp expect(<<c, rest::binary>>, c), do: rest
  defp expect(rest, c), do: fail(rest, "expected #{inspect(<<c>>)}")

  defp array(<<?], rest::binary>>), do: {[], rest}
  defp array(rest), do: elements(rest, [])

  defp elements(rest, acc) do
    {value, rest} = value(rest)

    case skip_ws(rest) do
      <<?,, rest::binary>> -> elements(skip_ws(rest), [value | acc])
      <<?], rest::binary>> -> {Enum.reverse([value | acc]), rest}
      rest -> fail(rest, "expected ',' or ']'")
    end
  end

  defp string(<<?", rest::binary>>, acc), do: {IO.iodata_to_binary(acc), rest}
  defp string(<<?\\, rest::binary>>, acc), do: escape(rest, acc)

  defp string(<<c, _::binary>> = rest, _acc) when c < 0x20,
    do: fail(rest, "control character in string")

  defp string(<<c::utf8, rest::binary>>, acc), do: string(rest, [acc, <<c::utf8>>])
  defp string("", _acc), do: fail("", "unterminated string")
  defp string(rest, _acc), do: fail(rest, "invalid UTF-8 in string")

  defp escape(<<?u, rest::binary>>, acc) do
    {code, rest} = unicode(rest)
    string(rest, [acc, <<code::utf8>>])
  end

  defp escape(<<c, rest::binary>>, acc) when is_map_key(@unescape, c),
    do: string(rest, [acc, Map.fetch!(@unescape, c)])

  defp escape(rest, _acc), do: fail(rest, "invalid escape sequence")

  defp unicode(input) do
    case hex4(input) do
      {high, <<"\\u", rest::binary>>} when high in 0xD800..0xDBFF ->
        case hex4(rest) do
          {low, rest} when low in 0xDC00..0xDFFF ->
            {0x10000 + (high - 0xD800) * 0x400 + low - 0xDC00, rest}

          _ ->
            fail(input, "invalid surrogate pair")
        end

      {code, _rest} when code in 0xD800..0xDFFF ->
        fail(input, "lone surrogate")

      result ->
        result
    end
  end

  defp hex4(<<a, b, c, d, rest::binary>>)
       when is_hex(a) and is_hex(b) and is_hex(c) and is_hex(d),
       do: {String.to_integer(<<a, b, c, d>>, 16), rest}

  defp hex4(rest), do: fail(rest, "invalid \\u escape")

  defp number(input) do
    {rest, int_only?} = input |> drop_minus() |> integer_part() |> fraction() |> exponent()
    text = binary_part(input, 0, byte_size(input) - byte_size(rest))

    case int_only? || Float.parse(text) do
      true -> {String.to_integer(text), rest}
      {float, ""} -> {float, rest}
      _ -> fail(input, "number out of range")
    end
  end

  defp drop_minus(<<?-, rest::binary>>), do: rest
  defp drop_minus(rest), do: rest

  defp integer_part(<<?0, rest::binary>>), do: rest
  defp integer_part(rest), do: digits1(rest)

  defp fraction(<<?., rest::binary>>), do: {digits1(rest), false}
  defp fraction(rest), do: {rest, true}

  defp exponent({<<e, s, rest::binary>>, _}) when e in [?e, ?E] and s in [?+, ?-],
    do: {digits1(rest), false}

  defp exponent({<<e, rest::binary>>, _}) when e in [?e, ?E], do: {digits1(rest), false}
  defp exponent(result), do: result

  defp digits1(<<c, _::binary>> = rest) when c in ?0..?9, do: digits(rest)
  defp digits1(rest), do: fail(rest, "expected digit")

  defp digits(<<c, rest::binary>>) when c in ?0..?9, do: digits(rest)
  defp digits(rest), do: rest
end
