AND countIf(positionCaseInsensitiveUTF8(Input, {text:String}) > 0 OR positionCaseInsensitiveUTF8(Output, {text:String}) > 0) > 0
